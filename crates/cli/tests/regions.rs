//! Residency end to end: two nodes, one per region (`us`, `eu`), each with its own data
//! directory, each the other's peer. A tenant placed in `eu` through the `us` node is served
//! through either node (settings, keys, sync and async ingest, reads, an export and its
//! download), across a SIGKILL of both nodes and a lifecycle pass to the warm and cold tiers;
//! and the byte search of the `us` data directory finds neither its events' markers nor even its
//! tenant id, while it finds its own tenant's (and the other way round). The platform admin's
//! cross-region view lists each region's tenants from that region's own answer. On SQLite, and
//! on PostgreSQL with a database per region (searched with `pg_dump`).

mod common;

use common::{get, get_bytes, post_json, put_json, wait_until, Server, ADMIN_TOKEN};
use sealtrail_hot_postgres::testing::TestDatabase;
use serde_json::{json, Value};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A free port on loopback, for a node its peer must know before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One region's node: its directory (and database), port and the other region as its peer.
struct Node<'a> {
    region: &'static str,
    dir: tempfile::TempDir,
    port: u16,
    database: Option<&'a TestDatabase>,
}

impl<'a> Node<'a> {
    fn new(region: &'static str, database: Option<&'a TestDatabase>) -> Node<'a> {
        Node {
            region,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            database,
        }
    }

    fn database_url(&self) -> Option<String> {
        self.database.map(TestDatabase::url)
    }

    fn data_dir(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn start(&self, peer: &Node) -> Server {
        let listen = format!("127.0.0.1:{}", self.port);
        let peer = format!("{}=http://127.0.0.1:{}", peer.region, peer.port);
        let args = common::on_backend(
            &[
                "--region",
                self.region,
                "--peer",
                &peer,
                "--listen",
                &listen,
            ],
            self.database_url().as_deref(),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_with(
            self.dir.path(),
            &args,
            &[("SEALTRAIL_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
    }

    /// Where `needle` is: files of the data directory, and on PostgreSQL a dump of the
    /// region's database.
    fn holding(&self, needle: &str) -> Vec<String> {
        let mut found = common::files_holding(self.dir.path(), needle.as_bytes());
        if let Some(database) = self.database {
            if String::from_utf8_lossy(&common::pg_dump(database)).contains(needle) {
                found.push(format!("pg_dump of region {}", self.region));
            }
        }
        found
    }
}

/// Events of `tenant` whose `metadata` and `ip_address` carry `marker`.
fn events(tenant: &str, marker: &str, prefix: &str, count: usize, at_ns: i64) -> Value {
    (0..count)
        .map(|n| {
            json!({"event_id": format!("{prefix}-{n}"), "tenant_id": tenant,
                "actor_id": "alice", "actor_type": "human", "action": "update",
                "resource_type": "document", "resource_id": format!("doc-{n}"),
                "timestamp": sealtrail_model::format_timestamp(at_ns + n as i64),
                "user_agent": format!("Agent/{marker}"),
                "metadata": {"note": format!("{marker}-{n}")}})
        })
        .collect()
}

fn event_ids(server: &Server, key: &str) -> Vec<String> {
    let (status, page) = get(&server.url("/v1/events?limit=1000"), key);
    assert_eq!(status, 200, "{page}");
    let mut ids: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["resource_type"] == "document")
        .map(|event| event["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_tenant_of_one_region_leaves_no_byte_in_another_on_sqlite() {
    regions(Node::new("us", None), Node::new("eu", None));
}

#[test]
fn a_tenant_of_one_region_leaves_no_byte_in_another_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let us_database = runtime.block_on(TestDatabase::create());
    let eu_database = runtime.block_on(TestDatabase::create());
    regions(
        Node::new("us", Some(&us_database)),
        Node::new("eu", Some(&eu_database)),
    );
}

fn regions(us: Node, eu: Node) {
    let run = format!("{:x}", now_ns() as u64 & 0xffff_ffff_ffff);
    let (eu_tenant, us_tenant) = (format!("acme-eu-{run}"), format!("acme-us-{run}"));
    let (eu_marker, us_marker) = (format!("eu-marker-{run}"), format!("us-marker-{run}"));
    let eu_node = eu.start(&us);
    let us_node = us.start(&eu);

    // Placement: the platform admin puts a new tenant in eu through the us node, and one in us
    // through the eu node; each lands in its own region, whichever node was asked.
    let (status, settings) = put_json(
        &us_node.url(&format!("/v1/tenants/{eu_tenant}")),
        ADMIN_TOKEN,
        &json!({"region": "eu"}),
    );
    assert_eq!(
        (status, &settings["region"]),
        (200, &json!("eu")),
        "{settings}"
    );
    let (status, settings) = put_json(
        &eu_node.url(&format!("/v1/tenants/{us_tenant}")),
        ADMIN_TOKEN,
        &json!({"region": "us"}),
    );
    assert_eq!(
        (status, &settings["region"]),
        (200, &json!("us")),
        "{settings}"
    );
    // A region neither node serves is refused by the node that would hold the tenant.
    let (status, refused) = put_json(
        &us_node.url("/v1/tenants/nowhere"),
        ADMIN_TOKEN,
        &json!({"region": "ap"}),
    );
    assert_eq!(
        (status, &refused["errors"][0]["field"]),
        (400, &json!("region"))
    );
    // Keys are made where the tenant is, asked through the other node.
    let eu_key = us_node.create_key(&eu_tenant, "admin");
    let us_key = eu_node.create_key(&us_tenant, "admin");
    let (status, seen) = get(
        &eu_node.url(&format!("/v1/tenants/{eu_tenant}")),
        ADMIN_TOKEN,
    );
    assert_eq!((status, &seen["region"]), (200, &json!("eu")), "{seen}");

    // Ingest through the other region's node, sync and async; reads through either.
    let old = now_ns() - 45 * DAY_NS;
    for (node, key, tenant, marker) in [
        (&us_node, &eu_key, &eu_tenant, &eu_marker),
        (&eu_node, &us_key, &us_tenant, &us_marker),
    ] {
        let (status, body) = post_json(
            &node.url("/v1/events"),
            key,
            &events(tenant, marker, "sync", 5, old),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = post_json(
            &node.url("/v1/events?durability=async"),
            key,
            &events(tenant, marker, "async", 3, old + 100),
        );
        assert_eq!(status, 202, "{body}");
    }
    // The platform admin's batch names its tenant: it goes to that tenant's region.
    let (status, body) = post_json(
        &us_node.url("/v1/events"),
        ADMIN_TOKEN,
        &events(&eu_tenant, &eu_marker, "admin", 2, old + 200),
    );
    assert_eq!(status, 201, "{body}");
    let mut both = events(&eu_tenant, &eu_marker, "mixed", 1, old + 300);
    both.as_array_mut().unwrap().extend(
        events(&us_tenant, &us_marker, "mixed", 1, old + 300)
            .as_array()
            .unwrap()
            .clone(),
    );
    let (status, refused) = post_json(&us_node.url("/v1/events"), ADMIN_TOKEN, &both);
    assert_eq!(
        (status, &refused["errors"][0]["field"]),
        (400, &json!("tenant_id")),
        "a batch across regions is refused whole: {refused}"
    );
    assert!(wait_until(30, || event_ids(&us_node, &eu_key).len() == 10));
    assert_eq!(event_ids(&eu_node, &eu_key), event_ids(&us_node, &eu_key));
    assert!(wait_until(30, || event_ids(&us_node, &us_key).len() == 8));
    // Only a peer's name in the forwarding header keeps a request where it is (so two peers
    // cannot loop); any other value is no reason not to forward, and the header grants nothing.
    for (from, expected) in [("mars", 200), ("eu", 401)] {
        let status = match ureq::get(&us_node.url("/v1/events?limit=1"))
            .set("Authorization", &format!("Bearer {eu_key}"))
            .set("Sealtrail-Forwarded-From", from)
            .call()
        {
            Ok(answer) => answer.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(status, expected, "forwarded from {from}");
    }

    // An export of the eu tenant, asked and downloaded through the us node.
    let (status, job) = post_json(
        &us_node.url("/v1/exports"),
        &eu_key,
        &json!({"format": "ndjson"}),
    );
    assert_eq!(status, 202, "{job}");
    let job_url = us_node.url(&format!(
        "/v1/exports/{}",
        job["export_id"].as_str().unwrap()
    ));
    let mut state = Value::Null;
    assert!(wait_until(60, || {
        state = get(&job_url, &eu_key).1;
        state["state"] == "done"
    }));
    let (status, file) = get_bytes(&format!("{job_url}/download"), &eu_key);
    assert_eq!(status, 200);
    let documents = String::from_utf8(file)
        .unwrap()
        .lines()
        .filter(|line| line.contains(&eu_marker))
        .count();
    assert_eq!(documents, 10, "{state}");

    // A crash of both nodes; more events after it, through the other node again.
    eu_node.signal_and_wait("KILL");
    us_node.signal_and_wait("KILL");
    let eu_node = eu.start(&us);
    let us_node = us.start(&eu);
    let (status, body) = post_json(
        &us_node.url("/v1/events"),
        &eu_key,
        &events(&eu_tenant, &eu_marker, "after", 2, old + 400),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(event_ids(&us_node, &eu_key).len(), 12);

    // The cross-region view: each region lists its own tenants.
    let (status, view) = get(&us_node.url("/v1/regions/tenants"), ADMIN_TOKEN);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["unreachable"], json!([]), "{view}");
    let listed = |region: &str| -> Vec<String> {
        view["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["region"] == region)
            .unwrap_or_else(|| panic!("no {region}: {view}"))["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tenant| tenant["tenant_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(listed("eu").contains(&eu_tenant), "{view}");
    assert!(!listed("eu").contains(&us_tenant), "{view}");
    assert!(listed("us").contains(&us_tenant), "{view}");
    assert!(!listed("us").contains(&eu_tenant), "{view}");
    let (status, _) = get(&us_node.url("/v1/regions/tenants"), &us_key);
    assert_eq!(status, 403, "the cross-region view is the platform admin's");

    // Each region's lifecycle moves its own tenants to its own warm and cold tiers.
    eu_node.signal_and_wait("TERM");
    us_node.signal_and_wait("TERM");
    assert_apart(
        &us, &eu, &us_tenant, &eu_tenant, &us_marker, &eu_marker, false,
    );
    for node in [&us, &eu] {
        common::move_everything_to_cold(node.data_dir(), node.database_url().as_deref());
    }
    let eu_node = eu.start(&us);
    let us_node = us.start(&eu);
    let (status, page) = get(&us_node.url("/v1/events?limit=1000"), &eu_key);
    assert_eq!(status, 200, "{page}");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["resource_type"] == "document")
            .all(|event| event["tier"] == "cold"),
        "{page}"
    );
    // A retry of archived events through the other node gets their stored receipts.
    let (status, retried) = post_json(
        &us_node.url("/v1/events"),
        &eu_key,
        &events(&eu_tenant, &eu_marker, "sync", 5, old),
    );
    assert_eq!(status, 201, "{retried}");
    for result in retried["results"].as_array().unwrap() {
        let stored = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["event_id"] == result["event_id"])
            .unwrap();
        assert_eq!(result["seq"], stored["seq"], "{result}");
    }
    assert_eq!(event_ids(&us_node, &eu_key).len(), 12);
    eu_node.signal_and_wait("TERM");
    us_node.signal_and_wait("TERM");
    let (code, output) = common::sealtrail_on(
        &["verify", "--data-dir", eu.data_dir()],
        eu.database_url().as_deref(),
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&eu_tenant), "{output}");

    assert_apart(
        &us, &eu, &us_tenant, &eu_tenant, &us_marker, &eu_marker, true,
    );
}

/// No byte of a tenant in the other region's directory, not even its id. Unless `moved` (its
/// events compressed into Parquet files by then), its own region's directory holds both: the
/// search finds what is there.
fn assert_apart(
    us: &Node,
    eu: &Node,
    us_tenant: &str,
    eu_tenant: &str,
    us_marker: &str,
    eu_marker: &str,
    moved: bool,
) {
    for (here, tenant, marker, other_tenant, other_marker) in [
        (us, us_tenant, us_marker, eu_tenant, eu_marker),
        (eu, eu_tenant, eu_marker, us_tenant, us_marker),
    ] {
        assert_eq!(here.holding(other_tenant), Vec::<String>::new());
        assert_eq!(here.holding(other_marker), Vec::<String>::new());
        assert!(!here.holding(tenant).is_empty(), "{}", here.region);
        if !moved {
            assert!(!here.holding(marker).is_empty(), "{}", here.region);
        }
    }
}
