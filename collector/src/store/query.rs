//! Statements built at run time with `$N` parameters, which both engines read (sqlx's own
//! `QueryBuilder` writes `?` for its Any driver, which PostgreSQL does not).

use std::fmt::Write as _;

use sqlx::Arguments as _;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use super::StoreError;

pub(super) struct SqlBuilder<'a> {
    sql: String,
    args: AnyArguments<'a>,
    binds: usize,
    /// The first value that failed to encode, reported by [`SqlBuilder::build`].
    error: Option<String>,
}

impl<'a> SqlBuilder<'a> {
    pub(super) fn new(sql: impl Into<String>) -> Self {
        SqlBuilder {
            sql: sql.into(),
            args: AnyArguments::default(),
            binds: 0,
            error: None,
        }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the next parameter (`$N`) and binds `value` to it.
    pub(super) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        self.binds += 1;
        let _ = write!(self.sql, "${}", self.binds);
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e.to_string());
        }
        self
    }

    /// Appends `VALUES (...), (...)`: one tuple per item, its values bound by `each`.
    pub(super) fn push_values<I, F>(&mut self, items: I, mut each: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(&mut Tuple<'_, 'a>, I::Item),
    {
        self.sql.push_str(" VALUES ");
        for (n, item) in items.into_iter().enumerate() {
            if n > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            each(
                &mut Tuple {
                    builder: self,
                    first: true,
                },
                item,
            );
            self.sql.push(')');
        }
        self
    }

    /// Appends `(a, b, ...)`, binding each of `values`.
    pub(super) fn push_list<I, T>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        self.sql.push('(');
        for (n, value) in values.into_iter().enumerate() {
            if n > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(value);
        }
        self.sql.push(')');
        self
    }

    /// The statement with its parameters, ready to run.
    pub(super) fn build(&mut self) -> Result<Query<'_, Any, AnyArguments<'_>>, StoreError> {
        if let Some(error) = self.error.take() {
            return Err(StoreError::Corrupt(format!(
                "a value for {:?} cannot be encoded: {error}",
                self.sql
            )));
        }
        Ok(sqlx::query_with(&self.sql, std::mem::take(&mut self.args)))
    }
}

/// One row of [`SqlBuilder::push_values`].
pub(super) struct Tuple<'b, 'a> {
    builder: &'b mut SqlBuilder<'a>,
    first: bool,
}

impl<'a> Tuple<'_, 'a> {
    pub(super) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        if !self.first {
            self.builder.sql.push_str(", ");
        }
        self.first = false;
        self.builder.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order_across_pieces() {
        let mut sql = SqlBuilder::new("INSERT INTO t (a, b)");
        sql.push_values([(1_i64, "x"), (2, "y")], |row, (a, b)| {
            row.push_bind(a).push_bind(b);
        });
        sql.push(" WHERE c IN ").push_list(["p", "q"]);
        assert_eq!(
            sql.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c IN ($5, $6)"
        );
        assert_eq!(sql.args.len(), 6);
    }
}
