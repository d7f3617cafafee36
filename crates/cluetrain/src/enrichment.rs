//! The enrichment step of the pipeline: sentiment columns, then conversation linkage per input
//! partition, driven by event-time watermarks.
//!
//! Linkage state is kept per input partition (the input is keyed by brand, so a brand's
//! conversations share a partition) and dropped when the watermark passes the response horizon.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use aggregate::{WatermarkConfig, Watermarks};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use enrich::linkage::{LinkInput, LinkStats, Linked, Linker, LinkerConfig, OrgAuthorRule};
use enrich::{EnrichError, sentiment};
use model::EventKind;
use model::config::Config;
use model::schema::col;

/// Sentiment and linkage state of a running pipeline.
pub struct Enrichment {
    link_cfg: LinkerConfig,
    linkers: HashMap<i32, Linker>,
    watermarks: Watermarks,
}

/// What one batch produced.
pub struct Enriched {
    /// The batch with sentiment columns added.
    pub batch: RecordBatch,
    /// What linkage learned (roles, first responses, response effects).
    pub linked: Vec<Linked>,
    /// The pipeline watermark after the batch, µs.
    pub watermark: Option<i64>,
}

impl Enrichment {
    /// Enrichment as configured.
    pub fn new(config: &Config) -> Self {
        let accounts = config
            .brands
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    b.accounts.iter().cloned().collect::<HashSet<_>>(),
                )
            })
            .collect();
        let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Enrichment {
            link_cfg: LinkerConfig {
                horizon_micros: micros(config.linkage.response_horizon),
                entries_max: config.linkage.entries_max,
                org_rule: match config.linkage.org_author_rule {
                    model::config::OrgAuthorRule::Configured => OrgAuthorRule::Configured,
                    model::config::OrgAuthorRule::ConfiguredElseIsOrg => {
                        OrgAuthorRule::ConfiguredElseIsOrg
                    }
                },
                accounts,
            },
            linkers: HashMap::new(),
            watermarks: Watermarks::new(WatermarkConfig {
                out_of_orderness_micros: micros(config.linkage.out_of_orderness),
                idle_timeout: config.linkage.idle_timeout,
            }),
        }
    }

    /// Linkage counters summed over partitions, and the number of entries held.
    pub fn link_stats(&self) -> (LinkStats, usize) {
        let mut total = LinkStats::default();
        let mut entries = 0;
        for l in self.linkers.values() {
            let s = l.stats();
            total.linked += s.linked;
            total.duplicates += s.duplicates;
            total.resolved_late += s.resolved_late;
            total.orphans += s.orphans;
            total.expired += s.expired;
            total.evicted += s.evicted;
            entries += l.entries();
        }
        (total, entries)
    }

    /// Scores and links one batch of decoded events.
    pub fn process(&mut self, events: &RecordBatch) -> Result<Enriched, EnrichError> {
        let batch = sentiment::append_sentiment_columns(events)?;
        let now = Instant::now();
        let mut linked = Vec::new();
        let str_col = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| c.as_string::<i32>().clone())
        };
        let (Some(ids), Some(brands), Some(kinds), Some(authors), Some(handles), Some(parents)) = (
            str_col(col::EVENT_ID),
            str_col(col::BRAND),
            str_col(col::KIND),
            str_col(col::AUTHOR_ID),
            str_col(col::AUTHOR_HANDLE),
            str_col(col::IN_REPLY_TO),
        ) else {
            return Ok(Enriched {
                batch,
                linked,
                watermark: self.watermarks.current(),
            });
        };
        let orgs = batch
            .column_by_name(col::AUTHOR_IS_ORG)
            .map(|c| c.as_boolean().clone());
        let times = batch
            .column_by_name(col::CREATED_AT)
            .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
        let parts = batch
            .column_by_name(col::KAFKA_PARTITION)
            .map(|c| c.as_primitive::<Int32Type>().clone());
        let compounds = batch
            .column_by_name(sentiment::col::COMPOUND)
            .map(|c| c.as_primitive::<Float64Type>().clone());
        let (Some(orgs), Some(times), Some(parts), Some(compounds)) =
            (orgs, times, parts, compounds)
        else {
            return Ok(Enriched {
                batch,
                linked,
                watermark: self.watermarks.current(),
            });
        };
        for i in 0..batch.num_rows() {
            let Some(kind) = EventKind::parse(kinds.value(i)) else {
                continue;
            };
            let partition = parts.value(i);
            let input = LinkInput {
                event_id: ids.value(i),
                brand: brands.value(i),
                kind,
                author_id: authors.value(i),
                author_handle: handles.is_valid(i).then(|| handles.value(i)),
                author_is_org: orgs.value(i),
                in_reply_to: parents.is_valid(i).then(|| parents.value(i)),
                created_at: times.value(i),
                compound: compounds.value(i),
            };
            self.watermarks.observe(partition, input.created_at, now);
            let cfg = &self.link_cfg;
            self.linkers
                .entry(partition)
                .or_insert_with(|| Linker::new(cfg.clone()))
                .observe(&input, &mut linked);
        }
        let watermark = self.watermarks.advance(now);
        if let Some(w) = watermark {
            for l in self.linkers.values_mut() {
                l.advance(w, &mut linked);
            }
        }
        Ok(Enriched {
            batch,
            linked,
            watermark,
        })
    }
}
