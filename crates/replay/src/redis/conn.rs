//! The command connection: one Redis through a `ConnectionManager`, or Redis Cluster through the
//! redis crate's cluster client, which follows `MOVED`/`ASK` redirections and refreshes its slot
//! map by itself. Scripts and single-key commands run the same on both; what differs is a batch
//! of commands on many keys, which one Redis takes as one pipeline and a cluster as one command
//! per key (a cluster pipeline may only touch one slot).

use std::future::Future;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult};

use super::*;

#[derive(Clone)]
pub(super) enum Con {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

impl Con {
    /// Runs every command and answers their replies in order: one pipeline on one Redis, one
    /// concurrent command each on a cluster.
    pub(super) fn each<T: FromRedisValue + Send + 'static>(
        &self,
        cmds: Vec<Cmd>,
    ) -> impl Future<Output = RedisResult<Vec<T>>> + Send + 'static {
        let con = self.clone();
        async move {
            if cmds.is_empty() {
                return Ok(Vec::new());
            }
            match con {
                Con::Single(mut c) => {
                    let mut pipe = redis::pipe();
                    for cmd in cmds {
                        pipe.add_command(cmd);
                    }
                    pipe.query_async(&mut c).await
                }
                Con::Cluster(c) => {
                    futures_util::future::try_join_all(cmds.into_iter().map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async::<T>(&mut c).await }
                    }))
                    .await
                }
            }
        }
    }
}
