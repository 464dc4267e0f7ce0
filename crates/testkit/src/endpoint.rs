//! The example API's endpoints and the resources they serve.

/// One route of the example API: what limits and faults are configured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /dev/v1/channel/{appid}`: the channels, page by page.
    ChannelList,
    /// `GET /dev/v1/channel/user/{appid}/{channel_name}`: one channel's users.
    ChannelUsers,
    /// `GET /v1/properties`: page-number pagination.
    Properties,
    /// `GET /v1/properties/{id}`.
    Property,
    /// `GET /v1/properties/bulk?ids=a,b,c`.
    PropertiesBulk,
    /// `GET /v1/tenancies`: cursor pagination, the cursor in the body.
    Tenancies,
    /// `GET /v1/tenancies/{id}`.
    Tenancy,
    /// `GET /v1/applicants`: pagination by an RFC 8288 `Link: <…>; rel="next"`.
    Applicants,
    /// `GET /v1/applicants/{id}`.
    Applicant,
    /// `POST /v1/tenancy-applications`.
    TenancyApplications,
    /// `POST /v1/appointments`.
    Appointments,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 11] = [
        Endpoint::ChannelList,
        Endpoint::ChannelUsers,
        Endpoint::Properties,
        Endpoint::Property,
        Endpoint::PropertiesBulk,
        Endpoint::Tenancies,
        Endpoint::Tenancy,
        Endpoint::Applicants,
        Endpoint::Applicant,
        Endpoint::TenancyApplications,
        Endpoint::Appointments,
    ];

    /// The name used for the endpoint's limit in `RateLimit-Policy`.
    pub const fn name(self) -> &'static str {
        match self {
            Endpoint::ChannelList => "channel-list",
            Endpoint::ChannelUsers => "channel-users",
            Endpoint::Properties => "properties",
            Endpoint::Property => "property",
            Endpoint::PropertiesBulk => "properties-bulk",
            Endpoint::Tenancies => "tenancies",
            Endpoint::Tenancy => "tenancy",
            Endpoint::Applicants => "applicants",
            Endpoint::Applicant => "applicant",
            Endpoint::TenancyApplications => "tenancy-applications",
            Endpoint::Appointments => "appointments",
        }
    }

    /// The route, in axum's syntax.
    pub const fn route(self) -> &'static str {
        match self {
            Endpoint::ChannelList => "/dev/v1/channel/{appid}",
            Endpoint::ChannelUsers => "/dev/v1/channel/user/{appid}/{channel_name}",
            Endpoint::Properties => "/v1/properties",
            Endpoint::Property => "/v1/properties/{id}",
            Endpoint::PropertiesBulk => "/v1/properties/bulk",
            Endpoint::Tenancies => "/v1/tenancies",
            Endpoint::Tenancy => "/v1/tenancies/{id}",
            Endpoint::Applicants => "/v1/applicants",
            Endpoint::Applicant => "/v1/applicants/{id}",
            Endpoint::TenancyApplications => "/v1/tenancy-applications",
            Endpoint::Appointments => "/v1/appointments",
        }
    }

    /// True for the endpoints that create records.
    pub const fn is_write(self) -> bool {
        matches!(self, Endpoint::TenancyApplications | Endpoint::Appointments)
    }

    /// The endpoint whose route is `route` (as axum's `MatchedPath` gives it).
    pub(crate) fn from_route(route: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.route() == route)
    }

    /// The id the limiter's policies know the endpoint by.
    pub(crate) const fn id(self) -> u32 {
        self as u32
    }
}

/// A kind of record the example API holds: what [`expected_records`] returns and
/// [`touch`] changes.
///
/// [`expected_records`]: crate::ApiHandle::expected_records
/// [`touch`]: crate::ApiHandle::touch
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Channels as the channel list shows them (`channel_name`, `user_count`).
    Channels,
    /// Each channel's user list, with its `channel_name`.
    ChannelUsers,
    /// Properties (primary key `id`).
    Properties,
    /// Tenancies (primary key `id`).
    Tenancies,
    /// Applicants (primary key `id`).
    Applicants,
    /// Tenancy applications created through `POST /v1/tenancy-applications`.
    TenancyApplications,
    /// Appointments created through `POST /v1/appointments`.
    Appointments,
}
