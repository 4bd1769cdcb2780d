//! A small statement builder: SQL text with `$n` placeholders plus typed arguments, bound in
//! order. Optional filters append clauses and arguments together so the numbering stays right.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyExecutor};
use strata_core::error::Result;

use crate::db_err;

#[derive(Clone, Debug)]
enum Arg {
    Int(Option<i64>),
    Str(Option<String>),
}

pub(crate) struct Q {
    sql: String,
    args: Vec<Arg>,
}

impl Q {
    pub fn new(sql: &str) -> Self {
        Self { sql: sql.to_owned(), args: Vec::new() }
    }

    pub fn int(mut self, v: i64) -> Self {
        self.args.push(Arg::Int(Some(v)));
        self
    }

    pub fn opt_int(mut self, v: Option<i64>) -> Self {
        self.args.push(Arg::Int(v));
        self
    }

    pub fn str(mut self, v: &str) -> Self {
        self.args.push(Arg::Str(Some(v.to_owned())));
        self
    }

    pub fn opt_str(mut self, v: Option<String>) -> Self {
        self.args.push(Arg::Str(v));
        self
    }

    /// Appends `text`, where `$?` stands for the next placeholder, binding `arg` to it.
    pub fn and_int(mut self, text: &str, v: i64) -> Self {
        let n = self.args.len() + 1;
        self.sql.push_str(&text.replace("$?", &format!("${n}")));
        self.int(v)
    }

    pub fn and_str(mut self, text: &str, v: &str) -> Self {
        let n = self.args.len() + 1;
        self.sql.push_str(&text.replace("$?", &format!("${n}")));
        self.str(v)
    }

    pub fn push(mut self, text: &str) -> Self {
        self.sql.push_str(text);
        self
    }

    fn build(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for a in &self.args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Str(v) => q.bind(v.clone()),
            };
        }
        q
    }

    pub async fn execute<'e>(&self, ex: impl AnyExecutor<'e>) -> Result<u64> {
        self.build().execute(ex).await.map(|r| r.rows_affected()).map_err(db_err)
    }

    pub async fn fetch_optional<'e>(&self, ex: impl AnyExecutor<'e>) -> Result<Option<AnyRow>> {
        self.build().fetch_optional(ex).await.map_err(db_err)
    }

    pub async fn fetch_all<'e>(&self, ex: impl AnyExecutor<'e>) -> Result<Vec<AnyRow>> {
        self.build().fetch_all(ex).await.map_err(db_err)
    }
}
