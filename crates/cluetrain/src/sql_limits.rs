//! Per-query limits that hold on every path a query can take (`cluetrain sql`, and both the
//! simple and the extended protocol of the Postgres-wire server, whose execution
//! datafusion-postgres drives itself): a physical optimizer rule, last in the session's list,
//! caps the rows of every plan at `sql.rows_max` and stops it with an error once
//! `sql.query_timeout` has passed since execution started. Memory is capped by the session's
//! memory pool (`sql.memory_bytes_max`).
//!
//! The deadline is checked between batches at every operator, not only at the root: an
//! aggregation over a CPU-bound join pulls batches from its input without ever returning to
//! the caller, so a check at the root alone would come only after the work is done. The root
//! also has a timer, for queries that wait (on object storage) rather than compute.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::{Stream, StreamExt};

/// The rule: wraps the root of every plan in a row cap and a deadline.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimitsRule {
    /// Rows a query returns at most.
    pub rows_max: usize,
    /// Wall time from the start of execution.
    pub timeout: Duration,
}

impl PhysicalOptimizerRule for QueryLimitsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let single: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(plan))
        } else {
            plan
        };
        let timeout = self.timeout;
        let checked = single
            .transform_up(|node| {
                if node.children().is_empty() {
                    return Ok(Transformed::no(node));
                }
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(DeadlineExec {
                    input: node,
                    timeout,
                    timer: false,
                });
                Ok(Transformed::yes(wrapped))
            })?
            .data;
        let limited = Arc::new(GlobalLimitExec::new(checked, 0, Some(self.rows_max)));
        Ok(Arc::new(DeadlineExec {
            input: limited,
            timeout,
            timer: true,
        }))
    }

    fn name(&self) -> &str {
        "cluetrain_query_limits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Fails its stream once `timeout` has passed since it was executed: checked at every batch,
/// and with `timer` also woken by a timer.
#[derive(Debug)]
struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    timeout: Duration,
    timer: bool,
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeadlineExec: timeout={:?}", self.timeout)?;
        if self.timer {
            write!(f, ", timer")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &'static str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "DeadlineExec has exactly one input".into(),
            ));
        }
        Ok(Arc::new(DeadlineExec {
            input: children.swap_remove(0),
            timeout: self.timeout,
            timer: self.timer,
        }))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(DeadlineStream {
            schema: inner.schema(),
            inner,
            timeout: self.timeout,
            deadline: Instant::now() + self.timeout,
            timer: self.timer,
            sleep: None,
            done: false,
        }))
    }
}

struct DeadlineStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    timeout: Duration,
    deadline: Instant,
    timer: bool,
    /// Started at the first poll (inside the runtime), when `timer`.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Stream for DeadlineStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let (timeout, deadline) = (self.timeout, self.deadline);
        let mut expired = Instant::now() >= deadline;
        if self.timer && !expired {
            let sleep = self.sleep.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                    deadline,
                )))
            });
            expired = sleep.as_mut().poll(cx).is_ready();
        }
        if expired {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(format!(
                "query timed out after {timeout:?}: narrow it (WHERE window_start > ...) or raise sql.query_timeout"
            )))));
        }
        let next = self.inner.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            self.done = true;
        }
        next
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn ctx(rows_max: usize, timeout: Duration) -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new())
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(QueryLimitsRule { rows_max, timeout }))
            .build();
        SessionContext::new_with_state(state)
    }

    #[tokio::test]
    async fn rows_are_capped_and_slow_queries_stop_with_a_clear_error() {
        let c = ctx(7, Duration::from_secs(30));
        let rows: usize = c
            .sql("SELECT * FROM unnest(range(1, 1000)) AS t(x)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 7);

        let c = ctx(7, Duration::from_millis(200));
        let started = Instant::now();
        let err = c
            .sql(
                "SELECT count(*) FROM unnest(range(1, 200000)) AS a(x) \
                 CROSS JOIN unnest(range(1, 200000)) AS b(y)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sql.query_timeout"), "{err}");
        // 4e10 joined rows take minutes: the query was stopped, not run to its end.
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
