//! Writes honour `Idempotency-Key`, and every write received is logged.

use serde_json::{Value, json};
use tollgate_testkit::{Endpoint, Faults, Resource, WriteOutcome};

use crate::support::{KEY, client, read, spawn, unlimited};

async fn post(
    api: &tollgate_testkit::RunningApi,
    path: &str,
    idem: Option<&str>,
    body: &Value,
) -> crate::support::Answer {
    let mut request = client()
        .post(api.url(path))
        .header("X-Api-Key", KEY)
        .json(body);
    if let Some(idem) = idem {
        request = request.header("Idempotency-Key", idem);
    }
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_record_and_creates_nothing() {
    let api = spawn(unlimited()).await;
    let body = json!({ "property_id": "prop-00003", "applicant_id": "app-00001" });
    let first = post(&api, "/v1/tenancy-applications", Some("idem-1"), &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["property_id"], "prop-00003");
    let again = post(&api, "/v1/tenancy-applications", Some("idem-1"), &body).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other_body = post(
        &api,
        "/v1/tenancy-applications",
        Some("idem-1"),
        &json!({ "x": 1 }),
    )
    .await;
    assert_eq!(other_body.status, 422);
    assert_eq!(
        post(&api, "/v1/tenancy-applications", None, &json!([1]))
            .await
            .status,
        400
    );
    assert_eq!(
        api.handle.expected_records(Resource::TenancyApplications),
        std::slice::from_ref(&first.body)
    );

    let outcomes: Vec<WriteOutcome> = api.handle.writes().into_iter().map(|w| w.outcome).collect();
    let id = first.body["id"].as_str().unwrap().to_owned();
    let expected = [
        WriteOutcome::Created { id: id.clone() },
        WriteOutcome::Replayed { id },
        WriteOutcome::KeyReused,
        WriteOutcome::Invalid,
    ];
    assert_eq!(outcomes, expected);
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_made_once_when_retried_with_its_key() {
    let api = spawn(unlimited()).await;
    let body = json!({ "property_id": "prop-00001", "starts_at": "2024-05-01T10:00:00Z" });
    api.handle
        .set_endpoint_faults(Endpoint::Appointments, Faults::none().resets(1.0));
    let lost = client()
        .post(api.url("/v1/appointments"))
        .header("X-Api-Key", KEY)
        .header("Idempotency-Key", "appt-1")
        .json(&body)
        .send()
        .await;
    assert!(
        lost.is_err(),
        "the connection should have been dropped: {lost:?}"
    );
    api.handle.clear_faults();
    let retried = post(&api, "/v1/appointments", Some("appt-1"), &body).await;
    assert_eq!(retried.status, 201);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(api.handle.expected_records(Resource::Appointments).len(), 1);
    let without_key = post(&api, "/v1/appointments", None, &body).await;
    assert_eq!(without_key.status, 201);
    assert_eq!(api.handle.expected_records(Resource::Appointments).len(), 2);
}
