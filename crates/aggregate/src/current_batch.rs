//! A table that is always "the micro-batch being aggregated now", so that the window engine's
//! two queries are planned once and executed for every batch.
//!
//! The engine used to register each batch as a table and run its SQL anew: parsing, logical
//! planning, optimising and physical planning both queries per batch. In the profile of the
//! end-to-end bench (2026-12-07, docs/performance-log.md) that was ~3 % of the process's CPU
//! and ~11 % of the window engine's thread, which is half of the pipeline's critical path.
//! DataFusion's own recursive CTEs re-run one plan over changing input the same way (its
//! `WorkTableExec`, which this follows).
//!
//! The plan's leaf ([`CurrentBatchExec`]) reads the batch from a slot the engine fills before
//! executing the plans ([`CurrentBatch::set`]). It reports no statistics (the trait's default:
//! unknown), so no optimiser rule can fold a count into a constant at planning time, and it
//! accepts no pushed-down filters, so every predicate stays in the plan.

use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};

/// The slot both the provider and every plan built over it share.
type Slot = Arc<Mutex<Option<RecordBatch>>>;

/// The table provider: register it once under the facts table's name.
#[derive(Debug)]
pub(crate) struct CurrentBatch {
    schema: SchemaRef,
    slot: Slot,
}

impl CurrentBatch {
    /// A table of `schema`, empty until [`CurrentBatch::set`].
    pub(crate) fn new(schema: SchemaRef) -> Self {
        CurrentBatch {
            schema,
            slot: Arc::default(),
        }
    }

    /// Makes `batch` the table's content for the plans executed next (`None`: empty again).
    pub(crate) fn set(&self, batch: Option<RecordBatch>) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = batch;
    }
}

#[async_trait]
impl TableProvider for CurrentBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CurrentBatchExec::new(
            Arc::clone(&self.schema),
            projection.cloned(),
            Arc::clone(&self.slot),
        )?))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }
}

/// The plan's leaf: at each execution, the batch in the slot, projected.
#[derive(Debug)]
pub(crate) struct CurrentBatchExec {
    /// The projected schema (what this node outputs).
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    slot: Slot,
    properties: Arc<PlanProperties>,
}

impl CurrentBatchExec {
    fn new(table: SchemaRef, projection: Option<Vec<usize>>, slot: Slot) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(table.project(p)?),
            None => table,
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(CurrentBatchExec {
            schema,
            projection,
            slot,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for CurrentBatchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "CurrentBatchExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for CurrentBatchExec {
    fn name(&self) -> &'static str {
        "CurrentBatchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("CurrentBatchExec has one partition, asked for {partition}");
        }
        let batch = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let batches = match (batch, &self.projection) {
            (None, _) => Vec::new(),
            (Some(b), None) => vec![b],
            (Some(b), Some(p)) => vec![b.project(p)?],
        };
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            Arc::clone(&self.schema),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn batch(schema: &SchemaRef, kinds: &[&str], xs: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(StringArray::from(kinds.to_vec())),
                Arc::new(Int64Array::from(xs.to_vec())),
            ],
        )
        .unwrap()
    }

    /// One plan, executed again after each `set`, aggregates the batch set last: counts are
    /// not folded into constants from statistics at planning time, filters and projections
    /// apply to every batch, and an emptied table gives no groups.
    #[test]
    fn one_plan_aggregates_whichever_batch_is_current() {
        futures::executor::block_on(async {
            let schema: SchemaRef = Arc::new(Schema::new(vec![
                Field::new("kind", DataType::Utf8, false),
                Field::new("x", DataType::Int64, false),
            ]));
            // As the engine's session: one partition (more would spawn repartitioning tasks).
            let ctx =
                SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
            let table = Arc::new(CurrentBatch::new(Arc::clone(&schema)));
            ctx.register_table("t", Arc::clone(&table) as Arc<dyn TableProvider>)
                .unwrap();
            let plan = ctx
                .sql("SELECT count(*) AS n, sum(x) FILTER (WHERE kind = 'a') AS a FROM t GROUP BY kind")
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let run = || async {
                let out = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
                let mut rows = Vec::new();
                for b in &out {
                    let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    let a = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
                    for i in 0..b.num_rows() {
                        rows.push((n.value(i), a.is_valid(i).then(|| a.value(i))));
                    }
                }
                rows.sort_unstable();
                rows
            };
            table.set(Some(batch(&schema, &["a", "a", "b"], &[1, 2, 40])));
            assert_eq!(run().await, vec![(1, None), (2, Some(3))]);
            table.set(Some(batch(
                &schema,
                &["b", "a", "a", "a"],
                &[5, 10, 20, 30],
            )));
            assert_eq!(run().await, vec![(1, None), (3, Some(60))]);
            table.set(None);
            assert_eq!(run().await, vec![]);
        });
    }
}
