//! The table's shape, defined once: the DynamoDB store, the tests and the local hub create
//! the table from this, and the template is checked against it.
//!
//! | item          | pk              | sk            | other attributes                                   |
//! |---------------|-----------------|---------------|----------------------------------------------------|
//! | connection    | `CONN#<connId>` | `META`        | connectionId, userId, connectedAt, sourceIp?, path?, ttl, topicCount? |
//! | subscription  | `CONN#<connId>` | `TOPIC#<t>`   | connectionId, topic, member?, ttl                  |
//! | presence      | `USER#<userId>` | `PRESENCE`    | lastActiveAt, ttl                                  |
//! | stream head   | `STREAM#<s>`    | `HEAD`        | seq, epoch, ttl                                    |
//! | publication   | `STREAM#<s>`    | `SEQ#<seq>`   | epoch, body, ttl (seq zero-padded to 20 digits)    |
//! | idempotency   | `STREAM#<s>`    | `KEY#<key>`   | owner, seq?, epoch?, ttl                           |
//!
//! Stream items ([`crate::store::stream`]) carry none of the index keys, so no index sees them.
//! | job claim     | `JOB#<key>`     | `CLAIM`       | claimedBy, ttl                                     |
//!
//! The connection item also carries `sendTat` once its client sends (the send rate limit's
//! theoretical arrival time, epoch ms; see [`crate::store::ConnectionStore::take_send_token`]).
//!
//! GSIs are sparse: only connection items carry `userId`, only subscription items carry `topic`.
//! The presence item must never carry `userId`, `topic` or `connectionId`: with them it would
//! enter an index and be taken for a connection by every broadcast. Its user is in its `pk`.
//! - `byUser` (userId, connectionId): a user's connections, and broadcast (a segmented Scan of
//!   this index reads one small item per connection and never a subscription).
//! - `byTopic` (topic, connectionId): a topic's subscribers.
//!
//! - `byMember` (topic, member): the members of a presence topic ([`crate::presence`]). Only
//!   subscriptions to presence topics carry `member` (`<userId>` U+001F `<connectionId>`), so
//!   only they enter it; sorted by member, a user's connections are adjacent and one
//!   `begins_with` Query finds them. U+001F sorts below every character a user id may hold
//!   (user ids have no control characters), so no other user's rows fall inside that prefix.
//!
//! All three project `ttl` so expired rows are skipped without a second read.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const CONNECTION_ID: &str = "connectionId";
pub const USER_ID: &str = "userId";
pub const TOPIC: &str = "topic";
pub const CONNECTED_AT: &str = "connectedAt";
pub const SOURCE_IP: &str = "sourceIp";
/// The connection's URL path (`EdgePath`), when it has one.
pub const PATH: &str = "path";
pub const TTL: &str = "ttl";
/// On the connection item: its subscriptions, kept by the same transactions that write them,
/// so `MAX_TOPICS_PER_CONNECTION` holds under concurrent subscribes. Absent means none.
pub const TOPIC_COUNT: &str = "topicCount";
pub const META: &str = "META";
/// Epoch milliseconds of the user's latest connect or disconnect.
pub const LAST_ACTIVE_AT: &str = "lastActiveAt";
pub const PRESENCE: &str = "PRESENCE";
/// A shard job's claim: which SQS message holds it ([`crate::shard`]).
pub const CLAIM: &str = "CLAIM";
pub const CLAIMED_BY: &str = "claimedBy";
/// The send rate limit's state on the connection item.
pub const SEND_TAT: &str = "sendTat";
pub const BY_USER: &str = "byUser";
pub const HEAD: &str = "HEAD";
pub const SEQ: &str = "seq";
pub const EPOCH: &str = "epoch";
pub const BODY: &str = "body";
pub const OWNER: &str = "owner";
pub const BY_TOPIC: &str = "byTopic";
pub const MEMBER: &str = "member";
pub const BY_MEMBER: &str = "byMember";

/// Between a member's user id and connection id: below every character of a user id.
pub const MEMBER_SEPARATOR: char = '\u{1f}';

/// `member` of a presence subscription; [`member_prefix`] finds all of one user's.
pub fn member(user_id: &str, connection_id: &str) -> String {
    format!("{user_id}{MEMBER_SEPARATOR}{connection_id}")
}

pub fn member_prefix(user_id: &str) -> String {
    format!("{user_id}{MEMBER_SEPARATOR}")
}

/// The user of a `member` value.
pub fn user_of_member(member: &str) -> Option<&str> {
    member.split_once(MEMBER_SEPARATOR).map(|(user, _)| user)
}

pub fn connection_pk(connection_id: &str) -> String {
    format!("CONN#{connection_id}")
}

/// The presence item's partition; [`user_of_pk`] reverses it.
pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub fn user_of_pk(pk: &str) -> Option<&str> {
    pk.strip_prefix("USER#")
}

pub fn stream_pk(stream: &str) -> String {
    format!("STREAM#{stream}")
}

/// Zero-padded, so the sort key orders publications by seq.
pub fn seq_sk(seq: u64) -> String {
    format!("SEQ#{seq:020}")
}

pub fn key_sk(key: &str) -> String {
    format!("KEY#{key}")
}

pub fn job_pk(job_key: &str) -> String {
    format!("JOB#{job_key}")
}

pub fn topic_sk(topic: &str) -> String {
    format!("TOPIC#{topic}")
}

/// A GSI as plain data, so the template test can compare without the SDK's builders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: &'static str,
    pub projected: &'static [&'static str],
}

pub const INDEXES: [IndexSpec; 3] = [
    IndexSpec {
        name: BY_USER,
        hash: USER_ID,
        range: CONNECTION_ID,
        projected: &[TTL],
    },
    IndexSpec {
        name: BY_TOPIC,
        hash: TOPIC,
        range: CONNECTION_ID,
        projected: &[TTL],
    },
    IndexSpec {
        name: BY_MEMBER,
        hash: TOPIC,
        range: MEMBER,
        projected: &[TTL],
    },
];

/// Every key attribute, all strings.
pub const KEY_ATTRIBUTES: [&str; 6] = [PK, SK, USER_ID, TOPIC, CONNECTION_ID, MEMBER];

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

/// Creates the table (on-demand, TTL on `ttl`) on any DynamoDB-compatible endpoint.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), aws_sdk_dynamodb::Error> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range));
    for attr in KEY_ATTRIBUTES {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
        );
    }
    for index in INDEXES {
        let projection = Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(index.projected.iter().map(|s| s.to_string()).collect()))
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.hash, KeyType::Hash))
                .key_schema(key(index.range, KeyType::Range))
                .projection(projection)
                .build()
                .expect("name, keys and projection are set"),
        );
    }
    request.send().await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL)
                .build()
                .expect("enabled and attribute are set"),
        )
        .send()
        .await?;
    Ok(())
}
