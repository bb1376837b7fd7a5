//! Writes the query benchmark's data set: a year of audit events for 50 tenants whose sizes
//! follow Zipf's law (the largest holds about a fifth of all events), as NDJSON in event
//! format v1 ready for `sealtrail import`, plus `<out>.facts.json` naming what the benchmark
//! queries look for (the largest tenant, a busy actor, a month, a quarter, a request id).
//!
//! Deterministic: the same arguments give the same bytes.
//!
//! Usage: query-data --out FILE [--events N] [--tenants N] [--end-day YYYY-MM-DD]

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{bail, Context};

const DAY_MS: i64 = 86_400_000;
const DEPARTMENTS: [&str; 8] = [
    "engineering",
    "finance",
    "sales",
    "support",
    "legal",
    "hr",
    "marketing",
    "operations",
];
const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "sealtrail-sdk-go/1.4.2",
    "okhttp/4.12.0",
];
/// Actions and their weights (per mille).
const ACTIONS: [(&str, u64); 9] = [
    ("user.login", 300),
    ("document.read", 250),
    ("document.update", 150),
    ("user.logout", 100),
    ("document.create", 80),
    ("document.delete", 50),
    ("permission.grant", 30),
    ("user.invite", 20),
    ("api_key.create", 20),
];

/// splitmix64: small, fast, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Args {
    out: String,
    events: u64,
    tenants: u64,
    end_day: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        out: String::new(),
        events: 10_000_000,
        tenants: 50,
        end_day: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = value()?,
            "--events" => args.events = value()?.parse()?,
            "--tenants" => args.tenants = value()?.parse()?,
            "--end-day" => args.end_day = Some(value()?),
            other => bail!("unknown flag {other}"),
        }
    }
    if args.out.is_empty() {
        bail!("--out FILE is required");
    }
    if args.tenants == 0 || args.events < args.tenants {
        bail!("--events must be at least --tenants, and --tenants at least 1");
    }
    Ok(args)
}

/// Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn rfc3339(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// First day (as days since the epoch) of the month `back` months before the month of `days`.
fn month_start(days: i64, back: i64) -> i64 {
    let (year, month, _) = civil_from_days(days);
    let index = year * 12 + (month - 1) - back;
    days_from_civil(index.div_euclid(12), index.rem_euclid(12) + 1, 1)
}

fn uuid_v7(ms: i64, rng: &mut Rng) -> String {
    let random = rng.next();
    let more = rng.next();
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        (ms >> 16) as u32,
        (ms & 0xffff) as u16,
        random & 0xfff,
        0x8000 | ((random >> 12) & 0x3fff),
        more & 0xffff_ffff_ffff
    )
}

/// The largest tenant's actor directory, one JSON array of `{actor_id, department}` per line
/// of at most 1,000 actors (one `PUT /v1/tenants/{t}/actors` each), for the summary queries:
/// the same actor ids and departments as its events.
fn write_directory(out: &str, tenant_id: &str, actors: u64) -> anyhow::Result<()> {
    let mut file = BufWriter::new(File::create(format!("{out}.actors.ndjson"))?);
    let ids: Vec<u64> = (0..actors).collect();
    for chunk in ids.chunks(1_000) {
        let entries: Vec<String> = chunk
            .iter()
            .map(|&actor| {
                let actor_id = if actor % 10 == 9 {
                    format!("svc-{actor}")
                } else {
                    format!("user-{actor}@{tenant_id}.example")
                };
                let department = DEPARTMENTS[(actor * 2_654_435_761 % 8) as usize];
                format!(r#"{{"actor_id":"{actor_id}","department":"{department}"}}"#)
            })
            .collect();
        writeln!(file, "[{}]", entries.join(","))?;
    }
    file.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let end_days = match &args.end_day {
        Some(day) => {
            let parts: Vec<i64> = day
                .split('-')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .context("--end-day must be YYYY-MM-DD")?;
            let [year, month, day] = parts[..] else {
                bail!("--end-day must be YYYY-MM-DD");
            };
            days_from_civil(year, month, day)
        }
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            now.as_secs() as i64 / 86_400
        }
    };
    let end_ms = end_days * DAY_MS;
    let start_ms = end_ms - 365 * DAY_MS;
    let harmonic: f64 = (1..=args.tenants).map(|rank| 1.0 / rank as f64).sum();
    let mut rng = Rng(0x5EA1_7A11);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&args.out)?);
    let mut written = 0u64;
    let mut probe_request_id = String::new();
    let mut sizes = Vec::new();
    for tenant in 0..args.tenants {
        let tenant_id = format!("tenant-{tenant:02}");
        let count = if tenant + 1 == args.tenants {
            args.events - written
        } else {
            ((args.events as f64 / harmonic / (tenant + 1) as f64).round() as u64).max(1)
        };
        sizes.push(count);
        let actors = (count / 500).max(20);
        let documents = (count / 50).max(100);
        if tenant == 0 {
            write_directory(&args.out, &tenant_id, actors)?;
        }
        for index in 0..count {
            // Stratified: sorted by construction, uniform over the year.
            let ms = start_ms
                + ((index as f64 + rng.unit()) / count as f64 * (end_ms - start_ms) as f64) as i64;
            // Squaring skews activity towards a core of busy actors.
            let actor = (rng.unit().powi(2) * actors as f64) as u64;
            let service = actor % 10 == 9;
            let department = DEPARTMENTS[(actor * 2_654_435_761 % 8) as usize];
            let mut pick = rng.below(1_000);
            let action = ACTIONS
                .iter()
                .find(|(_, weight)| {
                    let hit = pick < *weight;
                    pick = pick.saturating_sub(*weight);
                    hit
                })
                .map_or("document.read", |(name, _)| name);
            let failure = if action == "user.login" {
                rng.below(100) < 12
            } else {
                rng.below(100) < 2
            };
            let (resource_type, resource_id) = match action {
                "user.login" | "user.logout" => ("session", None),
                "permission.grant" => ("role", Some(format!("role-{}", rng.below(20)))),
                "user.invite" => ("user", Some(format!("user-{}", rng.below(actors * 2)))),
                "api_key.create" => ("api_key", Some(format!("key_{:012x}", rng.next() >> 16))),
                _ => ("document", Some(format!("doc-{}", rng.below(documents)))),
            };
            let changes = match action {
                "document.update" => {
                    let version = rng.below(40);
                    format!(
                        r#","changes":{{"after":{{"title":"v{}"}},"before":{{"title":"v{version}"}}}}"#,
                        version + 1
                    )
                }
                "permission.grant" => {
                    r#","changes":{"after":{"role":"editor"},"before":{"role":"viewer"}}"#
                        .to_owned()
                }
                _ => String::new(),
            };
            let mfa = if action == "user.login" {
                if rng.below(10) < 8 {
                    r#","mfa":true"#
                } else {
                    r#","mfa":false"#
                }
            } else {
                ""
            };
            let request_id = format!("req_{:016x}", rng.next());
            if tenant == 0 && index == count / 2 {
                probe_request_id = request_id.clone();
            }
            let (actor_id, actor_type, ip, agent) = if service {
                (
                    format!("svc-{actor}"),
                    "service",
                    format!("10.{}.0.{}", tenant, actor % 250),
                    USER_AGENTS[3 + (actor % 2) as usize],
                )
            } else {
                (
                    format!("user-{actor}@{tenant_id}.example"),
                    "human",
                    format!("203.0.{}.{}", actor % 256, (actor / 256) % 256),
                    USER_AGENTS[(actor % 3) as usize],
                )
            };
            let resource =
                resource_id.map_or(String::new(), |id| format!(r#","resource_id":"{id}""#));
            writeln!(
                out,
                r#"{{"event_id":"{}","timestamp":"{}","tenant_id":"{tenant_id}","actor_id":"{actor_id}","actor_type":"{actor_type}","action":"{action}","resource_type":"{resource_type}"{resource},"outcome":"{}","ip_address":"{ip}","user_agent":"{agent}","request_id":"{request_id}"{changes},"metadata":{{"department":"{department}"{mfa}}}}}"#,
                uuid_v7(ms, &mut rng),
                rfc3339(ms),
                if failure { "failure" } else { "success" },
            )?;
        }
        written += count;
    }
    out.flush()?;
    // What the benchmark asks about: the largest tenant, its busiest human actor, the calendar
    // month six months back, the quarter three to six months back, a request id mid-year.
    let month_from = month_start(end_days, 6);
    let month_to = month_start(end_days, 5);
    let quarter_from = month_start(end_days, 6);
    let quarter_to = month_start(end_days, 3);
    let facts = format!(
        concat!(
            "{{\"events\":{},\"tenants\":{},\"largest_tenant\":\"tenant-00\",",
            "\"largest_tenant_events\":{},\"actor_id\":\"user-0@tenant-00.example\",",
            "\"department\":\"engineering\",\"month_from\":\"{}\",\"month_to\":\"{}\",",
            "\"quarter_from\":\"{}\",\"quarter_to\":\"{}\",\"request_id\":\"{}\",",
            "\"year_from\":\"{}\",\"year_to\":\"{}\"}}\n"
        ),
        args.events,
        args.tenants,
        sizes[0],
        rfc3339(month_from * DAY_MS),
        rfc3339(month_to * DAY_MS),
        rfc3339(quarter_from * DAY_MS),
        rfc3339(quarter_to * DAY_MS),
        probe_request_id,
        rfc3339(start_ms),
        rfc3339(end_ms),
    );
    std::fs::write(format!("{}.facts.json", args.out), facts)?;
    eprintln!(
        "wrote {} events for {} tenants (largest {}) to {}",
        args.events, args.tenants, sizes[0], args.out
    );
    Ok(())
}
