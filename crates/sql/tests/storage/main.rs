//! The storage suite: one body per behaviour, each run against SQLite (a
//! temporary file) and PostgreSQL (a database of its own, dropped after).
//!
//! PostgreSQL must be reachable (`TOLLGATE_TEST_POSTGRES`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`): `scripts/test` starts it.
//! Without it the PostgreSQL half fails, saying how to start it.

mod crash;
mod events;
mod names;
mod outbox;
mod rate_limit;
mod reads;
mod records;
mod requests;
mod runs;
mod support;

/// For each `module::behaviour`, a test on each backend:
/// `sqlite::behaviour` and `postgres::behaviour`.
macro_rules! on_both_backends {
    ($($module:ident :: $behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::support::on_sqlite(crate::$module::$behaviour).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    crate::support::on_postgres(crate::$module::$behaviour).await;
                }
            )*
        }
    };
}

on_both_backends! {
    records::save_page_counts_inserted_updated_and_unchanged,
    records::json_bodies_round_trip,
    records::upsert_one_and_delete_serve_webhooks,
    records::clones_write_concurrently,
    runs::a_checkpoint_is_saved_with_its_page,
    runs::finish_run_clears_the_checkpoint_and_keeps_the_watermark,
    runs::fan_out_scopes_are_independent,
    runs::record_error_keeps_the_checkpoint,
    runs::reopening_keeps_everything,
    runs::a_fan_out_keeps_its_start_until_cleared_and_finds_its_finished_children,
    reads::list_pages_through_ids_in_byte_order,
    reads::list_filters_on_a_top_level_field,
    reads::list_refuses_bad_limits_and_fields,
    rate_limit::each_429_is_marked_honoured_or_not,
    requests::recent_requests_survive_a_restart_and_old_ones_are_forgotten,
    requests::the_latest_retry_instant_is_read_back,
    names::bad_resource_names_say_what_to_write,
    names::an_unknown_resource_says_to_ensure_it,
    outbox::a_submission_is_stored_once_per_idempotency_key,
    outbox::claims_go_by_priority_then_age_and_never_twice,
    outbox::two_workers_never_claim_the_same_submission,
    outbox::attempts_end_delivered_failed_or_queued_again,
    outbox::in_flight_ones_are_queued_again_after_a_crash,
    outbox::cancel_and_retry_by_hand,
    crash::killed_mid_import_loses_and_duplicates_nothing,
    crash::page_throughput,
    events::a_claimed_event_is_refused_again_even_after_reopening,
    events::old_events_are_forgotten_and_a_released_one_is_claimed_again,
    events::of_concurrent_claims_of_one_event_exactly_one_wins,
}
