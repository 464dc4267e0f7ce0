//! How `tollgate sync` imports this API: the `[[sources.resources]]` tables,
//! written once for the demo, the tests and the benchmarks.

use std::fmt::Write;

use crate::Resource;

/// The `[[sources.resources]]` tables that import `resources` from this API
/// (app id `demo-app`), `page_size` records a page. The channel user lists fan
/// out from `channels` (which must come first) under the API's 20/s limit.
///
/// ```
/// use tollgate_testkit::{Resource, sync_resources_toml};
/// let toml = sync_resources_toml(&[Resource::Channels, Resource::ChannelUsers], 100);
/// assert!(toml.contains("name = \"channel_users\""));
/// assert!(toml.contains("for_each"));
/// ```
pub fn sync_resources_toml(resources: &[Resource], page_size: u32) -> String {
    let mut out = String::new();
    for resource in resources {
        let table = match resource {
            Resource::Properties => format!(
                "name = \"properties\"\npath = \"/v1/properties\"\nrecords = \"/data\"\n\
                 pagination = {{ style = \"page\", param = \"page\", size_param = \"per_page\", size = {page_size} }}\n\
                 incremental = {{ field = \"updated_at\", param = \"updated_since\" }}\nevery = \"15min\"\n"
            ),
            Resource::Tenancies => format!(
                "name = \"tenancies\"\npath = \"/v1/tenancies\"\nquery = {{ limit = \"{page_size}\" }}\nrecords = \"/data\"\n\
                 pagination = {{ style = \"cursor\", param = \"cursor\", next = \"/next_cursor\" }}\nevery = \"15min\"\n"
            ),
            Resource::Applicants => format!(
                "name = \"applicants\"\npath = \"/v1/applicants\"\nquery = {{ per_page = \"{page_size}\" }}\nrecords = \"\"\n\
                 pagination = {{ style = \"link\" }}\nevery = \"1h\"\n"
            ),
            Resource::Channels => format!(
                "name = \"channels\"\npath = \"/dev/v1/channel/demo-app\"\nrecords = \"/data/channels\"\nid = \"channel_name\"\n\
                 pagination = {{ style = \"page\", param = \"page_no\", start = 0, size_param = \"page_size\", size = {page_size} }}\n\
                 every = \"5min\"\n"
            ),
            Resource::ChannelUsers => "name = \"channel_users\"\npath = \"/dev/v1/channel/user/demo-app/{channel_name}\"\n\
                 records = \"/data\"\nfor_each = { resource = \"channels\", fields = { channel_name = \"channel_name\" } }\n\
                 limit = \"20/s\"\nevery = \"5s\"\n"
                .to_owned(),
            Resource::TenancyApplications | Resource::Appointments => continue,
        };
        let _ = write!(out, "\n[[sources.resources]]\n{table}");
    }
    out
}
