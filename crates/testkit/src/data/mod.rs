//! The example data: deterministic from a seed, sized as the test asks.

mod records;

use records::{Applicant, Property, Tenancy};
pub(crate) use records::{Channel, Keyed, format_rfc3339, to_value};

use std::collections::BTreeSet;

use serde_json::Value;

use crate::endpoint::Resource;
use crate::rng::Rng;

/// How many records of each kind to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Channels of the communication platform.
    pub channels: usize,
    /// Properties.
    pub properties: usize,
    /// Tenancies.
    pub tenancies: usize,
    /// Applicants.
    pub applicants: usize,
}

impl Default for Sizes {
    /// 100 channels (the seed's example), 260 properties, 180 tenancies and 75
    /// applicants: each list spans several pages at its default page size.
    fn default() -> Self {
        Self {
            channels: 100,
            properties: 260,
            tenancies: 180,
            applicants: 75,
        }
    }
}

/// 2024-01-01T00:00:00Z: generated records were last changed in the 90 days after.
const DATA_EPOCH: u64 = 1_704_067_200;
const NINETY_DAYS: u64 = 90 * 86_400;

const PREFIXES: [&str; 4] = ["lobby", "class", "stage", "room"];
const STREETS: [&str; 6] = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Mill Road",
    "Park Avenue",
    "Queen Street",
];
const CITIES: [&str; 5] = ["Leeds", "Bristol", "York", "Norwich", "Cardiff"];
const FIRST: [&str; 8] = ["Ada", "Ben", "Cara", "Dev", "Ema", "Finn", "Gia", "Hal"];
const LAST: [&str; 6] = ["Shaw", "Patel", "Okafor", "Novak", "Lind", "Reyes"];

/// Every record the API serves, in primary-key order.
#[derive(Clone, Debug)]
pub(crate) struct Dataset {
    pub(crate) channels: Vec<Channel>,
    pub(crate) properties: Vec<Property>,
    pub(crate) tenancies: Vec<Tenancy>,
    pub(crate) applicants: Vec<Applicant>,
    /// Drives [`Dataset::touch`], so that changes are deterministic too.
    rng: Rng,
}

impl Dataset {
    pub(crate) fn generate(seed: u64, sizes: Sizes) -> Self {
        let mut rng = Rng::new(seed);
        let channels = (0..sizes.channels).map(|i| channel(&mut rng, i)).collect();
        let properties = (0..sizes.properties)
            .map(|i| property(&mut rng, i))
            .collect();
        let tenancies = (0..sizes.tenancies)
            .map(|i| tenancy(&mut rng, i, sizes.properties))
            .collect();
        let applicants = (0..sizes.applicants)
            .map(|i| applicant(&mut rng, i))
            .collect();
        Self {
            channels,
            properties,
            tenancies,
            applicants,
            rng,
        }
    }

    /// Every record of `resource` as the API serialises it (the generated kinds).
    pub(crate) fn records(&self, resource: Resource) -> Vec<Value> {
        match resource {
            Resource::Channels => self.channels.iter().map(Channel::list_item).collect(),
            Resource::ChannelUsers => self.channels.iter().map(channel_users_record).collect(),
            Resource::Properties => self.properties.iter().map(to_value).collect(),
            Resource::Tenancies => self.tenancies.iter().map(to_value).collect(),
            Resource::Applicants => self.applicants.iter().map(to_value).collect(),
            Resource::TenancyApplications | Resource::Appointments => Vec::new(),
        }
    }

    /// Changes `count` records of `resource` (distinct, chosen by the seed) and
    /// stamps them `updated_at` = the later of `now_secs` and one second after the
    /// newest record, so that an `updated_since` of any earlier sync finds them.
    /// Returns their primary keys (channel names for channels).
    pub(crate) fn touch(&mut self, resource: Resource, count: usize, now_secs: u64) -> Vec<String> {
        let stamp = now_secs.max(self.newest() + 1);
        let len = match resource {
            Resource::Channels | Resource::ChannelUsers => self.channels.len(),
            Resource::Properties => self.properties.len(),
            Resource::Tenancies => self.tenancies.len(),
            Resource::Applicants => self.applicants.len(),
            Resource::TenancyApplications | Resource::Appointments => 0,
        };
        let picked = self.pick_distinct(count.min(len), len);
        picked
            .into_iter()
            .map(|i| self.touch_one(resource, i, stamp))
            .collect()
    }

    fn touch_one(&mut self, resource: Resource, i: usize, stamp: u64) -> String {
        match resource {
            Resource::Properties => {
                let p = &mut self.properties[i];
                p.rent_pcm += 25;
                p.updated_at = stamp;
                p.id.clone()
            }
            Resource::Tenancies => {
                let t = &mut self.tenancies[i];
                t.status = if t.status == "active" {
                    "ended"
                } else {
                    "active"
                };
                t.updated_at = stamp;
                t.id.clone()
            }
            Resource::Applicants => {
                let a = &mut self.applicants[i];
                a.max_rent_pcm += 50;
                a.updated_at = stamp;
                a.id.clone()
            }
            _ => {
                let fresh = users(&mut self.rng);
                let c = &mut self.channels[i];
                c.users = fresh;
                c.name.clone()
            }
        }
    }

    fn pick_distinct(&mut self, count: usize, len: usize) -> BTreeSet<usize> {
        let mut picked = BTreeSet::new();
        while picked.len() < count {
            picked.insert(self.rng.below(len as u64) as usize);
        }
        picked
    }

    /// The latest `updated_at` of any record.
    fn newest(&self) -> u64 {
        let p = self.properties.iter().map(Keyed::updated_at);
        let t = self.tenancies.iter().map(Keyed::updated_at);
        let a = self.applicants.iter().map(Keyed::updated_at);
        p.chain(t).chain(a).max().unwrap_or(DATA_EPOCH)
    }
}

/// A channel's user list as one record: the API's `data` plus its name.
fn channel_users_record(channel: &Channel) -> Value {
    let mut data = channel.users_data();
    data["channel_name"] = Value::from(channel.name.as_str());
    data
}

fn channel(rng: &mut Rng, i: usize) -> Channel {
    Channel {
        name: format!("{}-{i:03}", rng.pick(&PREFIXES)),
        mode: rng.between(1, 2) as u8,
        users: users(rng),
    }
}

fn users(rng: &mut Rng) -> Vec<u32> {
    let count = rng.below(41) as usize;
    let mut users = BTreeSet::new();
    while users.len() < count {
        users.insert(1000 + rng.below(9000) as u32);
    }
    users.into_iter().collect()
}

fn updated_at(rng: &mut Rng) -> u64 {
    DATA_EPOCH + rng.below(NINETY_DAYS)
}

fn person(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST))
}

fn property(rng: &mut Rng, i: usize) -> Property {
    Property {
        id: format!("prop-{:05}", i + 1),
        address: format!("{} {}", rng.between(1, 240), rng.pick(&STREETS)),
        city: rng.pick(&CITIES),
        postcode: format!("LS{} {}AB", rng.between(1, 29), rng.between(1, 9)),
        bedrooms: rng.between(0, 5) as u8,
        rent_pcm: 25 * rng.between(24, 120) as u32,
        status: rng.pick(&["available", "let", "under_offer"]),
        updated_at: updated_at(rng),
    }
}

fn tenancy(rng: &mut Rng, i: usize, properties: usize) -> Tenancy {
    let property =
        (properties > 0).then(|| format!("prop-{:05}", rng.below(properties as u64) + 1));
    let start = DATA_EPOCH - rng.below(3 * 365) * 86_400;
    Tenancy {
        id: format!("ten-{:05}", i + 1),
        property_id: property,
        tenant_name: person(rng),
        start_date: format_rfc3339(start)[..10].to_owned(),
        rent_pcm: 25 * rng.between(24, 120) as u32,
        status: rng.pick(&["active", "ended", "pending"]),
        updated_at: updated_at(rng),
    }
}

fn applicant(rng: &mut Rng, i: usize) -> Applicant {
    let name = person(rng);
    let email = format!(
        "{}.{}@example.com",
        name.replace(' ', ".").to_lowercase(),
        i + 1
    );
    Applicant {
        id: format!("app-{:05}", i + 1),
        name,
        email,
        max_rent_pcm: 50 * rng.between(12, 60) as u32,
        min_bedrooms: rng.between(0, 4) as u8,
        updated_at: updated_at(rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data_and_keys_are_unique() {
        let sizes = Sizes::default();
        let (a, b) = (Dataset::generate(3, sizes), Dataset::generate(3, sizes));
        assert_eq!(
            a.records(Resource::Properties),
            b.records(Resource::Properties)
        );
        assert_ne!(
            a.records(Resource::Properties),
            Dataset::generate(4, sizes).records(Resource::Properties)
        );
        let names: BTreeSet<_> = a.channels.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names.len(), 100);
    }

    #[test]
    fn touched_records_are_newer_than_every_other() {
        let mut data = Dataset::generate(1, Sizes::default());
        let newest = data.newest();
        let touched = data.touch(Resource::Tenancies, 3, 0);
        assert_eq!(touched.len(), 3);
        let fresh = data
            .tenancies
            .iter()
            .filter(|t| t.updated_at > newest)
            .count();
        assert_eq!(fresh, 3);
    }
}
