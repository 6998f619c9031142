//! The admin dashboard's endpoints on Apache Kafka and PostgreSQL: the validator group's members
//! and the partitions each holds, queue depth per partition, submissions per status and
//! throughput from the read model's tallies (equal to counting the rows, computed again by a
//! rebuild, and filled in when an older generation is upgraded), a rebuild that does not park
//! again what the live projector parked, dead letters with their reason
//! and content, and the record browser decoding the log. Admins only; bad queries get a 400.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use reqwest::StatusCode;
use serde_json::Value;
use support::user::User;
use support::{eventually, TestDb, TestSystem};

const PASSING: usize = 12;
const FAILING: usize = 8;

fn numbers(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).collect()
}

/// Sums a field over the overview's throughput minutes.
fn per_minute_total(overview: &Value, field: &str) -> i64 {
    overview["throughput"].as_array().unwrap().iter().map(|m| m[field].as_i64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_the_group_depth_and_tallies_and_the_log_reads_decoded() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.validators = 2;
    // Slow judging (per batch), so the validators are still behind when the burst is sent,
    // however slowly the machine sends it: the last batch alone takes this long.
    config.processing_delay_ms = 1_500;
    let system = TestSystem::start_with(db, config).await;
    let kafka = system.running.kafka.clone();

    // Two validators split the partitions: each partition is held by exactly one of them.
    let overview = eventually("both validators hold partitions in a stable group", || async {
        let (status, overview) = system.get_json("/admin/overview").await;
        // Right after the start the group's coordinator may still be loading: 503, try again.
        if status == StatusCode::SERVICE_UNAVAILABLE && overview["error"]["code"] == "kafka_unavailable" {
            return None;
        }
        assert_eq!(status, StatusCode::OK, "{overview}");
        let members = overview["validator_group"]["members"].as_array().unwrap().clone();
        let stable = overview["validator_group"]["state"] == "Stable";
        (stable && members.len() == 2 && members.iter().all(|m| !m["partitions"].as_array().unwrap().is_empty())).then_some(overview)
    })
    .await;
    assert_eq!(overview["validator_group"]["group_id"], "validator");
    let partitions = overview["partitions"].as_array().unwrap().len() as i64;
    let mut held: Vec<i64> = overview["validator_group"]["members"].as_array().unwrap().iter().flat_map(|m| numbers(&m["partitions"])).collect();
    held.sort_unstable();
    assert_eq!(held, (0..partitions).collect::<Vec<_>>(), "every partition held once");

    // A burst: the overview sees the validators behind, then caught up.
    let mut ids = Vec::new();
    for i in 0..PASSING + FAILING {
        let content = if i < PASSING { format!("a passing text {i}") } else { format!("short{i}") };
        let (status, accepted) = system.submit(&content).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let deepest = std::cell::Cell::new(0);
    let caught_up = eventually("the validators and the projector have caught up", || async {
        let (_, overview) = system.get_json("/admin/overview").await;
        let mut behind = (0, 0);
        for partition in overview["partitions"].as_array().unwrap() {
            let end = partition["end_offset"].as_i64().unwrap();
            for (reader, total) in [("validator", &mut behind.0), ("projector", &mut behind.1)] {
                let depth = partition[format!("{reader}_depth")].as_i64().unwrap();
                if let Some(offset) = partition[format!("{reader}_offset")].as_i64() {
                    assert_eq!(depth, end - offset, "depth is what lies between the position and the end: {partition}");
                }
                *total += depth;
            }
        }
        deepest.set(deepest.get().max(behind.0));
        let counted = overview["submissions_by_status"]["PASSED"].as_i64().unwrap() + overview["submissions_by_status"]["FAILED"].as_i64().unwrap();
        (behind == (0, 0) && counted == (PASSING + FAILING) as i64).then_some(overview)
    })
    .await;
    assert!(deepest.get() > 0, "the overview saw the validators behind during the burst");

    // Per status and per minute, from the tallies: what the rows say.
    let by_status = &caught_up["submissions_by_status"];
    assert_eq!((by_status["PASSED"].as_i64(), by_status["FAILED"].as_i64()), (Some(PASSING as i64), Some(FAILING as i64)));
    assert_eq!((by_status["PENDING"].as_i64(), by_status["PROCESSING"].as_i64()), (Some(0), Some(0)));
    let pool = system.db.pool().await;
    let counted: BTreeMap<String, i64> =
        sqlx::query_as("SELECT status, count(*) FROM submissions GROUP BY status").fetch_all(&pool).await.unwrap().into_iter().collect();
    for (status, count) in &counted {
        assert_eq!(by_status[status].as_i64(), Some(*count), "{status}");
    }
    assert_eq!(caught_up["throughput"].as_array().unwrap().len(), 15, "one entry per minute, empty ones too");
    let totals = |overview: &Value| ["accepted", "started", "passed", "failed"].map(|field| per_minute_total(overview, field));
    let all = (PASSING + FAILING) as i64;
    assert_eq!(totals(&caught_up), [all, all, PASSING as i64, FAILING as i64]);

    // A record that is not an event lands on the dead-letter topic, shown with why and what.
    let producer = kafka.producer(Duration::from_secs(5)).unwrap();
    let poison: &[u8] = b"garbage \xff not an event";
    let delivered = producer.send(FutureRecord::to(&kafka.topic).key("poison").payload(poison).partition(0)).await.expect("written to the topic");
    let (poison_partition, poison_offset) = (delivered.partition, delivered.offset);
    eventually("the overview counts the dead letter", || async {
        let (_, overview) = system.get_json("/admin/overview").await;
        (overview["dead_letters"] == 1).then_some(())
    })
    .await;
    let (status, letters) = system.get_json("/admin/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(letters["count"], 1);
    let letter = &letters["latest"][0];
    assert!(letter["reason"].as_str().unwrap().starts_with("undecodable: not a valid event"), "{letter}");
    assert_eq!((letter["source_partition"].as_i64(), letter["source_offset"].as_i64()), (Some(i64::from(poison_partition)), Some(poison_offset)));
    assert_eq!(letter["content"], "garbage \u{fffd} not an event");

    // The record browser: a submission's records decoded, the poison as text with the reason.
    let (_, history) = system.get_json(&format!("/api/submissions/{}/events", ids[0])).await;
    let created = &history["events"][0];
    let (partition, offset) = (created["kafka_partition"].as_i64().unwrap(), created["kafka_offset"].as_i64().unwrap());
    let (status, page) = system.get_json(&format!("/admin/records?partition={partition}&offset={offset}&limit=1")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let record = &page["records"][0];
    assert_eq!(record["offset"].as_i64(), Some(offset));
    assert_eq!(record["event"]["event_type"], "SubmissionCreated");
    assert_eq!(record["event"]["submission_id"], ids[0].as_str());
    assert_eq!(record["key"], ids[0].as_str());
    assert!(record["headers"].as_array().unwrap().iter().any(|h| h["key"] == "traceparent"), "{record}");
    let (_, page) = system.get_json(&format!("/admin/records?partition={poison_partition}&offset={poison_offset}&limit=1")).await;
    let record = &page["records"][0];
    assert!(record["event"].is_null());
    assert!(record["decode_error"].as_str().unwrap().starts_with("not a valid event"), "{record}");
    assert_eq!(record["text"], "garbage \u{fffd} not an event");
    // Without an offset: the latest records, in order, up to the end.
    let (_, latest) = system.get_json("/admin/records?partition=0").await;
    let offsets = latest["records"].as_array().unwrap().iter().map(|r| r["offset"].as_i64().unwrap()).collect::<Vec<_>>();
    assert!(!offsets.is_empty() && offsets.len() <= 20 && offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert_eq!(offsets.last().copied(), Some(latest["end_offset"].as_i64().unwrap() - 1), "up to the end");
    let (_, dead) = system.get_json("/admin/records?topic=dead_letters&partition=0").await;
    let shown: usize = dead["records"].as_array().unwrap().len();
    assert_eq!(dead["topic"], kafka.dead_letter_topic());
    assert!(shown <= 1);

    // Bad queries change nothing and say why; only admins get in.
    for query in [
        "/admin/records",
        "/admin/records?partition=99",
        "/admin/records?partition=x",
        "/admin/records?partition=0&limit=0",
        "/admin/records?partition=0&limit=101",
        "/admin/records?partition=0&offset=-1",
        "/admin/records?partition=0&topic=elsewhere",
        "/admin/records?partition=0&extra=1",
        "/admin/dead-letters?limit=1000",
    ] {
        let (status, body) = system.get_json(query).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{query}: {body}");
    }
    let user = User::sign_up(&system.api, "operator-wannabe@example.com").await;
    for path in ["/admin/overview", "/admin/dead-letters", "/admin/records?partition=0"] {
        let (status, body) = user.get(&system.api, path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{path}");
        let anonymous = reqwest::get(system.url(path)).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // A rebuild computes the tallies again from the log: the same numbers.
    let started = system.http.post(system.url("/admin/rebuild")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let rebuilt = eventually("the overview shows the rebuild switched", || async {
        let (_, overview) = system.get_json("/admin/overview").await;
        (overview["rebuild"]["state"] == "switched").then_some(overview)
    })
    .await;
    assert_eq!(rebuilt["rebuild"]["to_generation"], 2);
    assert_eq!(rebuilt["submissions_by_status"], caught_up["submissions_by_status"]);
    assert_eq!(totals(&rebuilt), totals(&caught_up));
    // The live projector parked the poison record before the rebuild read it: not parked again.
    assert_eq!(rebuilt["dead_letters"], 1, "{rebuilt}");

    // A generation made before the tallies existed gets them filled when it is upgraded.
    let db = system.stop_keeping_database().await;
    let pool = db.pool().await;
    sqlx::query("DROP TABLE read_model_2.status_counts, read_model_2.activity_per_minute CASCADE").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM read_model_2._sqlx_migrations WHERE version = 6").execute(&pool).await.unwrap();
    projector::generations::prepare(&pool).await.expect("the live generation is upgraded");
    let upgraded: BTreeMap<String, i64> =
        sqlx::query_as("SELECT status, submissions FROM public.status_counts").fetch_all(&pool).await.unwrap().into_iter().collect();
    assert_eq!(upgraded, counted);
    let (accepted, judged): (i64, i64) =
        sqlx::query_as("SELECT sum(accepted)::bigint, sum(passed + failed)::bigint FROM public.activity_per_minute").fetch_one(&pool).await.unwrap();
    assert_eq!((accepted, judged), (all, all));
    pool.close().await;
    db.drop_database().await;
}
