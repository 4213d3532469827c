//! Redis Cluster: connecting through seed nodes, the append split in one script per slot, and
//! what must visit every master.
//!
//! An append on one Redis is one script. On a cluster the tenant's idempotency record and daily
//! counter live on the tenant's slot and each channel on its own, so an append goes in steps,
//! each one script on one slot (`README.md` tells the whole story):
//!
//! 1. *reserve* on the tenant's slot: the idempotency check, the quota check and charge, and a
//!    pending record naming this attempt's token;
//! 2. *append* on each channel's slot, its events of the batch in one script that records what
//!    the token did, so a second run of the same token appends nothing;
//! 3. *commit* on the tenant's slot: repeats answer these cursors from now on.
//!
//! When a step 2 fails, the attempt *fences* its channels' tokens (from then on the token can
//! never append there) and learns for each whether its events were stored. Nothing stored: the
//! charge is *refunded* and the publish answers 503 with nothing half-done. Anything stored:
//! the pending record stays, so a retry with the same `Idempotency-Key` resumes with the same
//! token, charges nothing and completes the rest.

use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::ProtocolVersion;

use super::*;

/// How long a token's record lives on a channel's slot without an idempotency key: only the
/// attempt itself fences it, within seconds.
const TOKEN_SECS: u64 = 600;

/// A master's address.
pub(super) struct Node {
    host: String,
    port: u16,
}

/// A command connection and the pub/sub connections (RESP3, pushes to the fan-out task), each
/// the cluster client's, both from the same comma-separated seeds.
pub(super) async fn connect(
    seeds: &str,
    keys: &Keys,
) -> Result<(Con, pubsub::Subscriber, pubsub::Source), BrokerError> {
    let seeds: Vec<&str> = seeds
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let builder = || {
        ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(COMMAND_TIMEOUT)
            .response_timeout(COMMAND_TIMEOUT)
            .overall_response_timeout(Some(COMMAND_TIMEOUT * 2))
    };
    let commands = builder().build().map_err(unavailable)?;
    let (pushes, source) = mpsc::unbounded_channel();
    let pubsub = builder()
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()
        .map_err(unavailable)?;
    let connect = async {
        let mut con = commands.get_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut con).await?;
        let mut sub = pubsub.get_async_connection().await?;
        // Orders to every process go over classic pub/sub, which a cluster delivers everywhere.
        sub.subscribe(keys.control()).await?;
        Ok::<_, redis::RedisError>((con, sub))
    };
    let (con, sub) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| unavailable("timed out connecting"))?
        .map_err(unavailable)?;
    Ok((
        Con::Cluster(con),
        pubsub::Subscriber::Cluster(sub),
        pubsub::Source::Cluster(source),
    ))
}

/// Every master, from `CLUSTER SLOTS`.
pub(super) async fn masters(con: &mut Con) -> Result<Vec<Node>, BrokerError> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(con)
        .await
        .map_err(unavailable)?;
    let mut nodes: Vec<(String, u16)> = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(master)) = parts.into_iter().nth(2) else {
            continue;
        };
        let mut master = master.into_iter();
        let (Some(host), Some(port)) = (master.next(), master.next()) else {
            continue;
        };
        let host: String = redis::from_redis_value(host).map_err(unavailable)?;
        let port: u16 = redis::from_redis_value(port).map_err(unavailable)?;
        if !nodes.contains(&(host.clone(), port)) {
            nodes.push((host, port));
        }
    }
    Ok(nodes
        .into_iter()
        .map(|(host, port)| Node { host, port })
        .collect())
}

/// Runs `cmd` on one node.
pub(super) async fn on_node<T: redis::FromRedisValue>(
    con: &mut Con,
    cmd: redis::Cmd,
    node: &Node,
) -> redis::RedisResult<T> {
    let Con::Cluster(c) = con else {
        return cmd.query_async(con).await;
    };
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
        host: node.host.clone(),
        port: node.port,
    });
    Ok(redis::from_redis_value(
        c.route_command(cmd, routing).await?,
    )?)
}

/// What a failed append gives back, and where.
struct Attempt<'a> {
    token: &'a str,
    token_secs: u64,
    idem_key: &'a str,
    quota_key: &'a str,
    fingerprint: &'a str,
    events: usize,
    /// Whether the reservation charged the quota: whoever removes its pending record refunds.
    charged: bool,
}

/// How one channel's part of an append ended.
enum Part {
    Stored(Vec<Cursor>),
    Fenced,
}

impl RedisBroker {
    /// An append on Redis Cluster: reserve, append per channel, commit (see the module).
    pub(super) async fn append_cluster(
        &self,
        batch: &[Append],
        idempotency: Option<&Idempotency>,
        quota: Option<&DailyQuota>,
    ) -> Result<Appended, BrokerError> {
        let Some(tenant) = batch.first().map(|a| a.channel.tenant.clone()) else {
            return Ok(Appended::Fresh(Vec::new()));
        };
        let tenant = idempotency.map_or(tenant, |i| i.tenant.clone());
        let idem_key = match idempotency {
            Some(i) => self.keys.idempotency(&i.tenant, &i.key),
            None => self.keys.idempotency(&tenant, "-"),
        };
        let quota_key = match quota {
            Some(q) => self.keys.quota(&q.tenant, q.day),
            None => self.keys.quota(&tenant, -1),
        };
        let fingerprint = idempotency.map_or("", |i| i.fingerprint.as_str());
        let token = format!("{:016x}", rand::random::<u64>());
        let (outcome, value): (String, String) = RESERVE
            .key(&idem_key)
            .key(&quota_key)
            .arg(fingerprint)
            .arg(batch.len())
            .arg(quota.map(|q| q.limit.to_string()).unwrap_or_default())
            .arg(&token)
            .arg(crate::IDEMPOTENCY_TTL.as_secs())
            .invoke_async(&mut self.con.clone())
            .instrument(tracing::info_span!("redis.script", script = "reserve"))
            .await
            .map_err(unavailable)?;
        let (token, resumed) = match outcome.as_str() {
            "reserved" => (value, false),
            "resume" => (value, true),
            "repeat" => return Ok(Appended::Repeat(parse_cursors(&value)?)),
            "conflict" => return Ok(Appended::Conflict),
            "quota" => return Ok(Appended::QuotaExceeded),
            other => {
                return Err(BrokerError::Protocol(format!(
                    "unknown reserve outcome {other:?}"
                )))
            }
        };
        // A token with a key may be resumed as long as its pending record lives.
        let token_secs = if idempotency.is_some() {
            crate::IDEMPOTENCY_TTL.as_secs()
        } else {
            TOKEN_SECS
        };

        // The batch's events per channel, channels in order of first appearance.
        let mut groups: Vec<(&ChannelKey, Vec<usize>)> = Vec::new();
        for (i, a) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(c, _)| **c == a.channel) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((&a.channel, vec![i])),
            }
        }
        let mut cursors: Vec<Option<Cursor>> = vec![None; batch.len()];
        let mut failure = None;
        for (at, (channel, idx)) in groups.iter().enumerate() {
            match self
                .append_part(channel, idx, batch, &token, token_secs)
                .await
            {
                Ok(Part::Stored(got)) if got.len() == idx.len() => {
                    for (i, c) in idx.iter().zip(got) {
                        cursors[*i] = Some(c);
                    }
                }
                Ok(Part::Stored(_)) => {
                    failure = Some((at, BrokerError::Protocol("wrong cursor count".into())));
                    break;
                }
                // Another attempt with this token gave up on it: this one cannot finish.
                Ok(Part::Fenced) => {
                    failure = Some((at, unavailable("an earlier attempt of this append failed")));
                    break;
                }
                Err(e) => {
                    failure = Some((at, e));
                    break;
                }
            }
        }
        if let Some((at, e)) = failure {
            if at == 0 {
                let attempt = Attempt {
                    token: &token,
                    token_secs,
                    idem_key: &idem_key,
                    quota_key: &quota_key,
                    fingerprint,
                    events: batch.len(),
                    charged: quota.is_some(),
                };
                self.abandon(&groups, attempt).await;
            } else {
                tracing::warn!(
                    "an append failed part-way on the cluster; a retry with its key completes it"
                );
            }
            return Err(e);
        }
        let cursors: Vec<Cursor> = cursors.into_iter().flatten().collect();
        if idempotency.is_some() {
            let joined = cursors
                .iter()
                .map(|c| format!("{}:{}", c.epoch.0, c.position))
                .collect::<Vec<_>>()
                .join(",");
            // Should this fail, the pending record stays and a repeat resumes to the same
            // cursors: what was stored stays the answer.
            COMMIT
                .key(&idem_key)
                .arg(fingerprint)
                .arg(&token)
                .arg(joined)
                .arg(crate::IDEMPOTENCY_TTL.as_secs())
                .invoke_async::<i64>(&mut self.con.clone())
                .instrument(tracing::info_span!("redis.script", script = "commit"))
                .await
                .map_err(unavailable)?;
        }
        Ok(if resumed {
            Appended::Repeat(cursors)
        } else {
            Appended::Fresh(cursors)
        })
    }

    /// One channel's events of the batch, on the channel's slot, once per token.
    async fn append_part(
        &self,
        channel: &ChannelKey,
        idx: &[usize],
        batch: &[Append],
        token: &str,
        token_secs: u64,
    ) -> Result<Part, BrokerError> {
        let (stream, meta) = self.keys.channel(channel);
        let span = tracing::info_span!(
            "redis.script",
            script = "append_channel",
            channel = %channel.channel,
            events = idx.len(),
        );
        let trace = span.in_scope(TraceParent::current);
        let mut invocation = APPEND_CHANNEL.prepare_invoke();
        invocation
            .key(stream)
            .key(meta)
            .key(self.keys.token(channel, token))
            .arg(token_secs)
            .arg(idx.len());
        for i in idx {
            self.append_args(&mut invocation, &batch[*i], trace);
        }
        let (outcome, cursors): (String, String) = invocation
            .invoke_async(&mut self.con.clone())
            .instrument(span)
            .await
            .map_err(unavailable)?;
        match outcome.as_str() {
            "fresh" | "applied" => Ok(Part::Stored(parse_cursors(&cursors)?)),
            "fenced" => Ok(Part::Fenced),
            other => Err(BrokerError::Protocol(format!(
                "unknown append outcome {other:?}"
            ))),
        }
    }

    /// After the first channel's step failed (nothing else ran): fence every channel's token;
    /// if nothing was stored anywhere, refund the charge and drop the pending record. If
    /// something was (a racing attempt of the same key), or a fence cannot be placed, the
    /// pending record and the charge stay.
    async fn abandon(&self, groups: &[(&ChannelKey, Vec<usize>)], attempt: Attempt<'_>) {
        let Attempt {
            token,
            token_secs,
            idem_key,
            quota_key,
            fingerprint,
            events,
            charged,
        } = attempt;
        let mut stored_anywhere = false;
        for (channel, _) in groups {
            let fenced: Result<String, _> = FENCE
                .key(self.keys.token(channel, token))
                .arg(token_secs)
                .invoke_async(&mut self.con.clone())
                .await;
            match fenced {
                Ok(f) if f == "fenced" => {}
                Ok(_) => stored_anywhere = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fence a failed append; its charge stays");
                    return;
                }
            }
        }
        if stored_anywhere {
            tracing::warn!("a failed append was stored in part by a racing attempt");
            return;
        }
        let refunded: Result<i64, _> = REFUND
            .key(idem_key)
            .key(quota_key)
            .arg(fingerprint)
            .arg(token)
            .arg(events)
            .arg(if charged { "1" } else { "" })
            .invoke_async(&mut self.con.clone())
            .await;
        if let Err(e) = refunded {
            tracing::warn!(error = %e, "cannot refund a failed append");
        }
    }
}
