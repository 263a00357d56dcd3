//! String functions whose output size the query chooses (`repeat`, `lpad`, `rpad`),
//! bounded per value. DataFusion allows each up to 2 GiB a value and allocates it
//! outside the memory pool, so `repeat('x', 1e9)` alone took 6.9 GB; here a call that
//! would make a value over [`MAX_GENERATED_BYTES`] fails with an error naming the
//! function and the limit, before anything is allocated. The functions are
//! DataFusion's own, wrapped: same names, signatures and results below the limit.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// The largest value (bytes) `repeat`, `lpad` or `rpad` may make: 64 MiB.
pub const MAX_GENERATED_BYTES: i64 = 64 << 20;

/// How a wrapped function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(str, n)`: the string's bytes times `n`.
    Repeat,
    /// `lpad(str, n [, fill])`, `rpad(...)`: `n` characters of up to 4 bytes.
    Pad,
}

/// A DataFusion string function with its output bounded.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let largest = largest_output(self.growth, &args.args)?;
        if largest > MAX_GENERATED_BYTES {
            return plan_err!(
                "{}() would make a value of {largest} bytes; cara allows at most {MAX_GENERATED_BYTES} bytes (64 MiB) per value",
                self.inner.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}

/// The largest output any row can have, in bytes (an upper bound: the longest string
/// times the largest count).
fn largest_output(growth: Growth, args: &[ColumnarValue]) -> Result<i64> {
    let count = args.get(1).map_or(Ok(0), largest_integer)?;
    Ok(match growth {
        Growth::Repeat => {
            let bytes = args.first().map_or(Ok(0), longest_string)?;
            bytes.saturating_mul(count.max(0))
        }
        Growth::Pad => count.max(0).saturating_mul(4),
    })
}

fn largest_integer(value: &ColumnarValue) -> Result<i64> {
    Ok(match value {
        ColumnarValue::Scalar(scalar) => match scalar.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(n)) => n,
            _ => 0,
        },
        ColumnarValue::Array(array) => {
            let array = datafusion::arrow::compute::cast(array, &DataType::Int64)?;
            array
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .max()
                .unwrap_or(0)
        }
    })
}

fn longest_string(value: &ColumnarValue) -> Result<i64> {
    let array = value.to_array(1)?;
    let lengths = datafusion::arrow::compute::cast(&length(&array)?, &DataType::Int64)?;
    Ok(lengths
        .as_primitive::<Int64Type>()
        .iter()
        .flatten()
        .max()
        .unwrap_or(0))
}

/// Replaces `repeat`, `lpad` and `rpad` in `ctx` with their bounded versions.
pub fn register(ctx: &SessionContext) -> Result<()> {
    for (name, growth) in [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
    ] {
        let inner = ctx.udf(name)?;
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded { inner, growth }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn query(sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        let ctx = SessionContext::new();
        register(&ctx)?;
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn results_below_the_limit_are_datafusions() {
        let batches =
            query("SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, rpad('x', 2) AS p")
                .await
                .unwrap();
        let row = |i: usize| {
            batches[0].column(i).as_string_view_opt().map_or_else(
                || batches[0].column(i).as_string::<i32>().value(0).to_owned(),
                |a| a.value(0).to_owned(),
            )
        };
        assert_eq!(
            (row(0), row(1), row(2)),
            ("ababab".into(), "007".into(), "x ".into())
        );
    }

    #[tokio::test]
    async fn a_value_over_the_limit_is_refused_before_it_is_made() {
        for sql in [
            "SELECT repeat('x', 1000000000)",
            "SELECT lpad('x', 1000000000)",
            "SELECT rpad('x', 100000000, 'y')",
            "SELECT repeat(s, 70000000) FROM (VALUES ('a'), ('b')) AS t(s)",
        ] {
            let error = query(sql).await.unwrap_err().to_string();
            assert!(
                error.contains("64 MiB") && error.contains("would make"),
                "{sql}: {error}"
            );
        }
        // Just under it: made.
        assert!(query("SELECT length(repeat('x', 67108864))").await.is_ok());
    }
}
