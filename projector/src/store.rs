//! The read model in PostgreSQL: loading state and positions, and writing one batch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::fold::apply;
use domain::{AccountId, Applied, BatchItem, Content, Envelope, Event, FailureReason, Status, Submission, SubmissionId, TransitionError};
use kafka_kit::topic_identity::TopicIdentity;
use keyring::Keyring;
use sqlx::{PgPool, Postgres, Transaction};

use crate::generations::{self, Generation};

mod tallies;

/// Advisory lock taken by every write transaction, one per generation: one writer at a time per
/// read model, so `seq` is assigned in commit order even if two projectors run by mistake.
const WRITER_LOCK_BASE: i64 = 0x636f_6e74_656e_7500;

/// The projector's pool: the services' settings (no ping when a connection is taken, which was
/// a round trip more for every batch), waiting up to 5 s for a connection.
pub async fn connect(database_url: &str) -> Result<PgPool, sqlx::Error> {
    service_kit::postgres::pool_options(4).acquire_timeout(Duration::from_secs(5)).connect(database_url).await
}

/// Next offset to read per partition of `generation`, as committed with the rows they produced.
pub async fn load_positions(pool: &PgPool, generation: Generation, topic: &str) -> Result<BTreeMap<i32, i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    generations::positions(&mut tx, generation, topic).await
}

/// The topic identity `generation` last read from, if it recorded one.
pub async fn load_topic_identity(pool: &PgPool, generation: Generation, topic: &str) -> Result<Option<TopicIdentity>, sqlx::Error> {
    let row: Option<(Option<String>, i32)> =
        sqlx::query_as(&format!("SELECT topic_id, partitions FROM {}.projector_topic WHERE topic = $1", generations::schema(generation)))
            .bind(topic)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, partitions)| TopicIdentity { id, partitions }))
}

/// Records the identity of the topic `generation` reads from now (an id that could not be
/// read keeps the one recorded).
pub async fn save_topic_identity(pool: &PgPool, generation: Generation, topic: &str, identity: &TopicIdentity) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {}.projector_topic (topic, topic_id, partitions) VALUES ($1, $2, $3)
         ON CONFLICT (topic) DO UPDATE SET
             topic_id = COALESCE(EXCLUDED.topic_id, projector_topic.topic_id), partitions = EXCLUDED.partitions",
        generations::schema(generation)
    ))
    .bind(topic)
    .bind(&identity.id)
    .bind(identity.partitions)
    .execute(pool)
    .await?;
    Ok(())
}

/// One decoded record from the topic.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}

/// What a committed batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    pub applied: usize,
    pub duplicates: usize,
    /// Records the fold refused, by index into the batch, with the reason.
    pub refused: Vec<(usize, TransitionError)>,
}

/// One batch being written: everything in it commits together or not at all.
pub struct BatchTransaction {
    tx: Transaction<'static, Postgres>,
    /// Highest seq before this batch.
    last_seq: i64,
    /// Events this batch inserted.
    written: i64,
}

/// How [`begin_batch`] found things.
pub enum Begun {
    /// Write the batch in this.
    Batch(BatchTransaction),
    /// The generation was retired by a switch: the caller must move to the live one.
    Retired,
    /// The writer's PostgreSQL session no longer holds the replicas' leader lock (it may be
    /// another replica's now): this writer must not write.
    NotLeader,
}

/// Starts a batch in `generation`: checks it is still being written (not retired by a switch,
/// which waits for this transaction), takes the writer lock and reads where `seq` stands; with
/// a `leader_session`, also checks, from inside the transaction, that this session still holds
/// the replicas' leader lock (a writer whose session ended must not commit).
///
/// Four round trips with `BEGIN`, where there were up to seven: a batch at 1,000 submissions a
/// second carries a few dozen, and each statement costs both processes more than its rows do.
///
/// A batch that is not `durable` commits without waiting for the WAL flush. That is only for a
/// generation being built: nobody reads it yet, its rows and positions still commit together,
/// and the switch that makes it live is a synchronous commit, which flushes all before it.
pub async fn begin_batch(pool: &PgPool, generation: Generation, durable: bool, leader_session: Option<i32>) -> Result<Begun, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Every statement of a batch finds its rows by key: the batch's submissions, their owners'
    // keys, an erased account's rows. The planner priced a rebuild batch's thousands of index
    // probes above reading the whole submissions table, and chose the scan until the table
    // held a few hundred thousand rows: each batch cost as much as the table was large.
    // With the scan ruled out, the plan a statement gets on its first use is the plan for any
    // batch, so each is planned once per connection and generation, as on a connection of
    // `service_kit::postgres::planned_once` (why: there). Set per transaction, not on the pool,
    // which also runs the switches, the positions and the index builds.
    // The transaction's settings ride on the statement that reads (and locks) the generation's
    // row; a durable batch keeps the server's `synchronous_commit`.
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state, set_config('search_path', $2, true), set_config('enable_seqscan', 'off', true),
             set_config('plan_cache_mode', 'force_generic_plan', true),
             set_config('synchronous_commit', CASE WHEN $3 THEN current_setting('synchronous_commit') ELSE 'off' END, true)
         FROM public.read_models WHERE generation = $1 FOR SHARE",
    )
    .bind(generation)
    .bind(generations::schema(generation))
    .bind(durable)
    .fetch_optional(&mut *tx)
    .await?;
    if !matches!(state.as_deref(), Some("live" | "building")) {
        return Ok(Begun::Retired);
    }
    // A statement of its own: the next statement's snapshot must be taken once the previous
    // writer committed, for `seq` to stand where it ended.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITER_LOCK_BASE + i64::from(generation)).execute(&mut *tx).await?;
    // A bigint advisory key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
    let (last_seq, leader): (i64, bool) = sqlx::query_as(
        "SELECT COALESCE(MAX(seq), 0), $1::int IS NULL OR EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND pid = $1 AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $2)
         FROM submission_events",
    )
    .bind(leader_session)
    .bind(crate::leader::LEADER_LOCK)
    .fetch_one(&mut *tx)
    .await?;
    if !leader {
        return Ok(Begun::NotLeader);
    }
    Ok(Begun::Batch(BatchTransaction { tx, last_seq, written: 0 }))
}

impl BatchTransaction {
    /// Folds `records` into the read model (not yet committed).
    pub async fn apply(&mut self, records: &[Record], keyring: &Keyring) -> Result<BatchOutcome, sqlx::Error> {
        // First, so that no text of theirs is written by this batch either.
        let erased: Vec<(AccountId, DateTime<Utc>)> = records
            .iter()
            .filter_map(|record| match record.envelope.event {
                Event::AccountErased { account_id } => Some((account_id, record.envelope.occurred_at)),
                _ => None,
            })
            .collect();
        if !erased.is_empty() {
            erase_accounts(&mut self.tx, &erased).await?;
        }
        let states = load_states(&mut self.tx, &submission_ids(records)).await?;
        let folded = fold(records, states);
        self.write(&folded, keyring).await?;
        Ok(folded.outcome)
    }

    /// Writes what [`fold`] or [`fold_ahead`] made of a batch (not yet committed).
    pub async fn write(&mut self, folded: &Folded, keyring: &Keyring) -> Result<(), sqlx::Error> {
        if folded.events.is_empty() {
            return Ok(());
        }
        let first_seq = self.last_seq + self.written + 1;
        let texts = texts_of_created(&mut self.tx, keyring, &folded.states, &folded.created).await?;
        folded.events.insert(&mut self.tx, first_seq, &texts).await?;
        upsert_submissions(&mut self.tx, &folded.states, &folded.changed, first_seq, &folded.events, &texts).await?;
        folded.tallies.write(&mut self.tx).await?;
        self.written += folded.events.len() as i64;
        Ok(())
    }

    /// Moves the positions to `next_offsets`, announces the new rows and commits.
    pub async fn commit(mut self, topic: &str, next_offsets: &BTreeMap<i32, i64>) -> Result<(), sqlx::Error> {
        let partitions: Vec<i32> = next_offsets.keys().copied().collect();
        let offsets: Vec<i64> = next_offsets.values().copied().collect();
        // GREATEST: positions never move backwards, even if two writers overlap. The
        // notification is delivered by PostgreSQL only when the transaction commits.
        sqlx::query(
            "WITH positions AS (
                 INSERT INTO projector_positions (topic, partition, next_offset)
                 SELECT $1, partition, next_offset FROM UNNEST($2::int[], $3::bigint[]) AS t(partition, next_offset)
                 ON CONFLICT (topic, partition) DO UPDATE
                     SET next_offset = GREATEST(projector_positions.next_offset, EXCLUDED.next_offset)
             )
             SELECT pg_notify($4, $5) WHERE $6",
        )
        .bind(topic)
        .bind(&partitions)
        .bind(&offsets)
        .bind(service_kit::READ_MODEL_CHANGES)
        .bind((self.last_seq + self.written).to_string())
        .bind(self.written > 0)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await
    }
}

/// A batch folded onto the states of the submissions it touches, before it is written.
pub struct Folded {
    outcome: BatchOutcome,
    /// Every submission the batch touches, as the fold left it (`None`: none exists).
    states: HashMap<SubmissionId, Option<Submission>>,
    events: EventRows,
    changed: Vec<SubmissionId>,
    created: Vec<SubmissionId>,
    tallies: tallies::Tallies,
}

/// Folds `records` onto `states`, which holds every submission they touch. Erasures among them
/// are skipped: [`BatchTransaction::apply`] runs them first.
fn fold(records: &[Record], mut states: HashMap<SubmissionId, Option<Submission>>) -> Folded {
    let mut outcome = BatchOutcome::default();
    let mut events = EventRows::default();
    let mut changed: Vec<SubmissionId> = Vec::new();
    let mut created: Vec<SubmissionId> = Vec::new();
    let mut tallies = tallies::Tallies::default();
    for (index, record) in records.iter().enumerate() {
        let envelope = &record.envelope;
        if let Event::AccountErased { .. } = envelope.event {
            continue;
        }
        let state = states.entry(envelope.submission_id).or_default();
        let before = state.as_ref().map(|s| s.status);
        match apply(state, envelope) {
            Ok(Applied::Changed) => {
                if before.is_none() {
                    created.push(envelope.submission_id);
                }
                let status = state.as_ref().map(|s| s.status).unwrap_or(Status::Pending);
                tallies.moved(before, status, envelope.occurred_at);
                events.push(record, status);
                changed.push(envelope.submission_id);
                outcome.applied += 1;
            }
            Ok(Applied::AlreadyApplied) => outcome.duplicates += 1,
            Err(refusal) => outcome.refused.push((index, refusal)),
        }
    }
    Folded { outcome, states, events, changed, created, tallies }
}

impl Folded {
    pub fn outcome(&self) -> &BatchOutcome {
        &self.outcome
    }

    /// The states this fold left of the submissions `records` touch too: the fold of the batch
    /// after this one starts from them while this one's rows are not committed yet.
    pub fn carried_into(&self, records: &[Record]) -> HashMap<SubmissionId, Option<Submission>> {
        submission_ids(records).into_iter().filter_map(|id| Some((id, self.states.get(&id)?.clone()))).collect()
    }
}

/// Folds `records` of `generation` before their transaction, so that a rebuild folds the next
/// batch while the one before it is written. The submissions that batch touched are in
/// `carried` ([`Folded::carried_into`]), as its fold left them; the others are read from the
/// generation, which the batch being written does not change.
///
/// `None` for a batch that erases accounts: it is folded in its transaction, after the
/// erasure. The batch after it is folded only once it committed (nothing is carried from it),
/// since the erasure scrubs rows that fold would read.
pub async fn fold_ahead(
    pool: &PgPool,
    generation: Generation,
    records: &[Record],
    mut carried: HashMap<SubmissionId, Option<Submission>>,
) -> Result<Option<Folded>, sqlx::Error> {
    if records.iter().any(|record| matches!(record.envelope.event, Event::AccountErased { .. })) {
        return Ok(None);
    }
    let unread: Vec<SubmissionId> = submission_ids(records).into_iter().filter(|id| !carried.contains_key(id)).collect();
    if !unread.is_empty() {
        let mut tx = pool.begin().await?;
        // The batch transaction's settings (why: `begin_batch`), for the same statement.
        sqlx::query(
            "SELECT set_config('search_path', $1, true), set_config('enable_seqscan', 'off', true),
                 set_config('plan_cache_mode', 'force_generic_plan', true)",
        )
        .bind(generations::schema(generation))
        .execute(&mut *tx)
        .await?;
        carried.extend(load_states(&mut tx, &unread).await?);
        tx.commit().await?;
    }
    Ok(Some(fold(records, carried)))
}

/// The submissions `records` are about, each once, in order.
fn submission_ids(records: &[Record]) -> Vec<SubmissionId> {
    let mut ids: Vec<SubmissionId> = records.iter().map(|r| r.envelope.submission_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[derive(sqlx::FromRow)]
struct SubmissionRow {
    id: SubmissionId,
    sealed_content: Option<Vec<u8>>,
    content: Option<String>,
    owner_id: Option<AccountId>,
    batch_id: Option<uuid::Uuid>,
    batch_index: Option<i32>,
    batch_size: Option<i32>,
    replaces: Option<SubmissionId>,
    status: String,
    reasons: Vec<String>,
    created_at: DateTime<Utc>,
    processing_started_at: Option<DateTime<Utc>>,
    processed_at: Option<DateTime<Utc>>,
}

impl SubmissionRow {
    fn into_submission(self) -> Result<Submission, sqlx::Error> {
        let corrupt = |what: String| sqlx::Error::Decode(what.into());
        Ok(Submission {
            id: self.id,
            status: Status::parse(&self.status).ok_or_else(|| corrupt(format!("unknown status {}", self.status)))?,
            reasons: self
                .reasons
                .iter()
                .map(|r| FailureReason::parse(r).ok_or_else(|| corrupt(format!("unknown reason {r}"))))
                .collect::<Result<_, _>>()?,
            content: match self.sealed_content {
                Some(sealed) => Content::Sealed(sealed),
                // Plain text scrubbed by an erasure: nothing is left to compare a repeated
                // creation with, so one would be refused (and parked) rather than accepted.
                None => Content::Plain(self.content.unwrap_or_default()),
            },
            owner_id: self.owner_id,
            batch: match (self.batch_id, self.batch_index, self.batch_size) {
                (Some(batch_id), Some(index), Some(size)) => Some(BatchItem {
                    batch_id,
                    index: u32::try_from(index).map_err(|_| corrupt(format!("batch index {index}")))?,
                    size: u32::try_from(size).map_err(|_| corrupt(format!("batch size {size}")))?,
                }),
                _ => None,
            },
            replaces: self.replaces,
            created_at: self.created_at,
            processing_started_at: self.processing_started_at,
            processed_at: self.processed_at,
        })
    }
}

/// Current state of the submissions `ids` (absent ones map to `None` later).
async fn load_states(tx: &mut Transaction<'_, Postgres>, ids: &[SubmissionId]) -> Result<HashMap<SubmissionId, Option<Submission>>, sqlx::Error> {
    let rows: Vec<SubmissionRow> = sqlx::query_as(
        "SELECT id, sealed_content, content, owner_id, batch_id, batch_index, batch_size, replaces, status, reasons, created_at,
             processing_started_at, processed_at
         FROM submissions WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(|row| Ok((row.id, Some(row.into_submission()?)))).collect()
}

/// The batch's new event rows, column by column, for one multi-row insert. Their `seq` is
/// known only in the transaction: the first is the one after the generation's last.
#[derive(Default)]
struct EventRows {
    event_id: Vec<uuid::Uuid>,
    submission_id: Vec<SubmissionId>,
    event_type: Vec<&'static str>,
    step: Vec<i16>,
    schema_version: Vec<i16>,
    status: Vec<&'static str>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<uuid::Uuid>,
    payload: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    /// Each submission's last event in this batch, by index.
    last_of: HashMap<SubmissionId, usize>,
}

impl EventRows {
    fn len(&self) -> usize {
        self.event_id.len()
    }

    fn is_empty(&self) -> bool {
        self.event_id.is_empty()
    }

    fn push(&mut self, record: &Record, status: Status) {
        let envelope = &record.envelope;
        self.last_of.insert(envelope.submission_id, self.len());
        self.event_id.push(envelope.event_id);
        self.submission_id.push(envelope.submission_id);
        self.event_type.push(envelope.event.type_name());
        self.step.push(i16::from(status.step()));
        self.schema_version.push(envelope.schema_version as i16);
        self.status.push(status.as_str());
        self.occurred_at.push(envelope.occurred_at);
        self.correlation_id.push(envelope.correlation_id);
        self.payload.push(payload_json(envelope));
        self.partition.push(record.partition);
        self.offset.push(record.offset);
    }

    /// The `seq` of each row, the first being `first_seq`.
    fn seqs(&self, first_seq: i64) -> Vec<i64> {
        (first_seq..).take(self.len()).collect()
    }

    /// The stored payloads, without the text of any creation whose owner was erased: events
    /// from before content was sealed carry it in the clear.
    fn payloads_without_erased_text(&self, texts: &HashMap<SubmissionId, Option<String>>) -> Cow<'_, [String]> {
        let erased = |index: usize| self.event_type[index] == "SubmissionCreated" && matches!(texts.get(&self.submission_id[index]), Some(None));
        if !(0..self.len()).any(erased) {
            return Cow::Borrowed(&self.payload);
        }
        let mut payloads = self.payload.clone();
        for (index, stored) in payloads.iter_mut().enumerate() {
            if !erased(index) {
                continue;
            }
            if let Ok(serde_json::Value::Object(mut payload)) = serde_json::from_str(stored) {
                payload.remove("content");
                *stored = serde_json::Value::Object(payload).to_string();
            }
        }
        Cow::Owned(payloads)
    }

    /// The arrays are unnested side by side in the select list (they are of one length), which
    /// streams the rows into the insert; `FROM UNNEST(...)` is a function scan, which
    /// materialises every row first: a tenth more of the statement's time.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        first_seq: i64,
        texts: &HashMap<SubmissionId, Option<String>>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO submission_events (seq, event_id, submission_id, event_type, schema_version,
                 status, occurred_at, correlation_id, payload, kafka_partition, kafka_offset, step)
             SELECT unnest($1::bigint[]), unnest($2::uuid[]), unnest($3::uuid[]), unnest($4::text[]), unnest($5::smallint[]),
                 unnest($6::text[]), unnest($7::timestamptz[]), unnest($8::uuid[]), unnest($9::text[])::jsonb,
                 unnest($10::int[]), unnest($11::bigint[]), unnest($12::smallint[])",
        )
        .bind(self.seqs(first_seq))
        .bind(&self.event_id)
        .bind(&self.submission_id)
        .bind(&self.event_type)
        .bind(&self.schema_version)
        .bind(&self.status)
        .bind(&self.occurred_at)
        .bind(&self.correlation_id)
        .bind(self.payloads_without_erased_text(texts).as_ref())
        .bind(&self.partition)
        .bind(&self.offset)
        .bind(&self.step)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The event's `payload` object as stored for history (the wire format's payload field).
fn payload_json(envelope: &Envelope) -> String {
    let mut tagged = serde_json::to_value(&envelope.event).unwrap_or_default();
    tagged.get_mut("payload").map(serde_json::Value::take).unwrap_or_default().to_string()
}

/// Records that the log says `erased` accounts were erased, and scrubs what this generation
/// holds of their text (as the erasure itself did for every generation: this finds something
/// only in a generation built since, where a key survived the erasure).
async fn erase_accounts(tx: &mut Transaction<'_, Postgres>, erased: &[(AccountId, DateTime<Utc>)]) -> Result<(), sqlx::Error> {
    let (accounts, times): (Vec<AccountId>, Vec<DateTime<Utc>>) = erased.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO erased_accounts (account_id, erased_at) SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[])
         ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(&accounts)
    .bind(&times)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT public.erase_generation_content(current_schema(), account) FROM UNNEST($1::uuid[]) AS account")
        .bind(&accounts)
        .execute(&mut **tx)
        .await?;
    for account_id in accounts {
        tracing::info!(%account_id, "the log says the account is erased: none of its text is kept");
    }
    Ok(())
}

/// The text of each submission the batch `created` that has an owner, as the read model may
/// hold it: sealed content opened with the owner's data key, plain text (from before content
/// was sealed) as it is; `None` once the owner was erased, by its key's tombstone or by the
/// log (or when a key does not open: logged). The keys are read `FOR SHARE`, so an erasure
/// running meanwhile scrubs what this batch writes.
async fn texts_of_created(
    tx: &mut Transaction<'_, Postgres>,
    keyring: &Keyring,
    states: &HashMap<SubmissionId, Option<Submission>>,
    created: &[SubmissionId],
) -> Result<HashMap<SubmissionId, Option<String>>, sqlx::Error> {
    let owned: Vec<(SubmissionId, AccountId, &Content)> = created
        .iter()
        .filter_map(|id| {
            let submission = states.get(id)?.as_ref()?;
            Some((*id, submission.owner_id?, &submission.content))
        })
        .collect();
    if owned.is_empty() {
        return Ok(HashMap::new());
    }
    let mut owners: Vec<AccountId> = owned.iter().map(|(_, owner, _)| *owner).collect();
    owners.sort_unstable();
    owners.dedup();
    // The log's word first: no key is made, or locked, for an account it says is erased.
    let erased: HashSet<AccountId> = sqlx::query_scalar("SELECT account_id FROM erased_accounts WHERE account_id = ANY($1)")
        .bind(&owners)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    owners.retain(|owner| !erased.contains(owner));
    let keys = keyring::store::keys_held(tx, keyring, &owners).await?;
    Ok(owned
        .into_iter()
        .map(|(submission_id, owner, content)| {
            if erased.contains(&owner) {
                return (submission_id, None);
            }
            let text = keyring::store::readable_text(content, keys.get(&owner), submission_id).unwrap_or_else(|error| {
                tracing::error!(%submission_id, %error, "sealed content does not open; the read model shows it as erased");
                None
            });
            (submission_id, text)
        })
        .collect())
}

/// Writes the new state of every submission the batch changed: for those it created, the text
/// as `texts` gives it (opened, or none once the owner is erased), and sealed bytes beside it
/// for the fold.
async fn upsert_submissions(
    tx: &mut Transaction<'_, Postgres>,
    states: &HashMap<SubmissionId, Option<Submission>>,
    changed: &[SubmissionId],
    first_seq: i64,
    events: &EventRows,
    texts: &HashMap<SubmissionId, Option<String>>,
) -> Result<(), sqlx::Error> {
    let mut ids = changed.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<&Submission> = ids.iter().filter_map(|id| states.get(id)?.as_ref()).collect();
    let reasons: Vec<String> = rows.iter().map(|s| s.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")).collect();
    sqlx::query(
        "INSERT INTO submissions (id, content, status, reasons, created_at, processing_started_at,
             processed_at, last_event_seq, owner_id, batch_id, batch_index, batch_size, replaces, sealed_content)
         SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::text[]), string_to_array(unnest($4::text[]), ','),
             unnest($5::timestamptz[]), unnest($6::timestamptz[]), unnest($7::timestamptz[]), unnest($8::bigint[]),
             unnest($9::uuid[]), unnest($10::uuid[]), unnest($11::int[]), unnest($12::int[]), unnest($13::uuid[]),
             unnest($14::bytea[])
         ON CONFLICT (id) DO UPDATE SET
             status = EXCLUDED.status,
             reasons = EXCLUDED.reasons,
             processing_started_at = EXCLUDED.processing_started_at,
             processed_at = EXCLUDED.processed_at,
             last_event_seq = EXCLUDED.last_event_seq",
    )
    .bind(rows.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|s| match (texts.get(&s.id), &s.content) {
                (Some(text), _) => text.as_deref(),
                (None, Content::Plain(text)) => Some(text.as_str()),
                (None, Content::Sealed(_)) => None,
            })
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|s| s.status.as_str()).collect::<Vec<_>>())
    .bind(&reasons)
    .bind(rows.iter().map(|s| s.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.processing_started_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.processed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| first_seq + events.last_of[&s.id] as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.owner_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.batch.map(|b| b.batch_id)).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.batch.map(|b| i32::try_from(b.index).unwrap_or(i32::MAX))).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.batch.map(|b| i32::try_from(b.size).unwrap_or(i32::MAX))).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.replaces).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|s| match &s.content {
                Content::Sealed(bytes) => Some(bytes.as_slice()),
                Content::Plain(_) => None,
            })
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three submissions in an order a partition may hold them, a duplicate, and an event about a
    /// submission nobody created.
    fn history() -> Vec<Record> {
        let at = Utc::now();
        let created = |n: u128, text: &str| {
            let event = Event::SubmissionCreated { content: Content::Plain(text.into()), owner_id: None, batch: None, replaces: None };
            Envelope::new(uuid::Uuid::from_u128(n), event, at, uuid::Uuid::nil())
        };
        let (a, b, c) = (created(1, "first text 1"), created(2, "second"), created(3, "third text 3"));
        let failed = Event::SubmissionFailed { reasons: vec![FailureReason::TooShort, FailureReason::NoDigit], char_count: Some(6) };
        let envelopes = [
            a.clone(),
            b.clone(),
            a.follow_up(Event::ProcessingStarted {}, at),
            c.clone(),
            b.follow_up(Event::ProcessingStarted {}, at),
            a.follow_up(Event::SubmissionPassed {}, at),
            a.follow_up(Event::SubmissionPassed {}, at),
            b.follow_up(failed, at),
            Envelope::new(uuid::Uuid::from_u128(4), Event::ProcessingStarted {}, at, uuid::Uuid::nil()),
            c.follow_up(Event::ProcessingStarted {}, at),
        ];
        envelopes.into_iter().zip(0..).map(|(envelope, offset)| Record { partition: 0, offset, envelope }).collect()
    }

    #[test]
    fn a_history_folded_in_two_batches_the_first_carried_into_the_second_is_folded_as_in_one() {
        let records = history();
        let whole = fold(&records, HashMap::new());
        assert_eq!((whole.outcome.applied, whole.outcome.duplicates, whole.outcome.refused.len()), (8, 1, 1));
        for split in 0..=records.len() {
            let (before, after) = records.split_at(split);
            let first = fold(before, HashMap::new());
            let then = fold(after, first.carried_into(after));
            let mut states = first.states.clone();
            states.extend(then.states.clone());
            assert_eq!(states, whole.states, "split at {split}");
            let rows = |folded: &[&Folded]| -> Vec<(uuid::Uuid, &str)> {
                folded.iter().flat_map(|f| f.events.event_id.iter().copied().zip(f.events.status.iter().copied())).collect()
            };
            assert_eq!(rows(&[&first, &then]), rows(&[&whole]), "split at {split}");
            let counts = |f: &Folded| (f.outcome.applied, f.outcome.duplicates, f.outcome.refused.len());
            let (one, two) = (counts(&first), counts(&then));
            assert_eq!((one.0 + two.0, one.1 + two.1, one.2 + two.2), counts(&whole), "split at {split}");
        }
    }
}
