//! Aggregates over an entity's rows with SQLite's semantics: `count(*)` counts rows,
//! `count(f)` non-NULL values; `sum` is an integer while every input is an integer (an
//! overflow is an error, as in SQLite) and NULL over no input; `avg` is a real; `min`/`max`
//! ignore NULLs and order like ORDER BY. Groups come out in ascending group-key order.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result, SqlState};
use crate::exec::filter::key_of;
use crate::exec::graph_fetch::Executor;
use crate::ir::aggregate::{AggFunc, Aggregate, AggregateResult, Measure};
use crate::ir::expr::to_numeric;
use crate::ir::graph::Budget;
use crate::txn::Txn;
use crate::value::{encode_key_value, parse_numeric, Value};

#[derive(Default, Clone)]
struct Acc {
    count: u64,
    int_sum: i64,
    real_sum: f64,
    any_real: bool,
    any: bool,
    best: Option<Value>,
    seen: Option<HashSet<Vec<u8>>>,
}

pub fn run(txn: &mut Txn, a: &Aggregate) -> Result<AggregateResult> {
    let schema = txn.schema().clone();
    let pos = schema
        .entity_pos(&a.entity)
        .ok_or_else(|| Error::unknown_entity(&a.entity))?;
    let e = schema.entity_at(pos);
    let group: Vec<u32> = a
        .group_by
        .iter()
        .map(|n| e.field_index_or_err(n))
        .collect::<Result<_>>()?;
    let measures: Vec<(Option<u32>, &Measure)> = a
        .measures
        .iter()
        .map(|m| {
            let f = m
                .field
                .as_ref()
                .map(|n| e.field_index_or_err(n))
                .transpose()?;
            if f.is_none() && m.func != AggFunc::Count {
                return Err(Error::invalid(format!("{:?} needs a field", m.func)));
            }
            Ok((f, m))
        })
        .collect::<Result<_>>()?;
    let rows = Executor::new(txn, Budget::default()).matching_rows(pos, a.filter.as_ref())?;
    let examined = rows.len() as u64;
    // Group key (order-preserving encoding) -> (group values, accumulators).
    let mut groups: BTreeMap<Vec<u8>, (Vec<Value>, Vec<Acc>)> = BTreeMap::new();
    if group.is_empty() {
        groups.insert(
            Vec::new(),
            (Vec::new(), vec![Acc::default(); measures.len()]),
        );
    }
    for (_, vals) in &rows {
        let mut k = Vec::new();
        for g in &group {
            encode_key_value(&vals[*g as usize], &mut k);
        }
        let entry = groups.entry(k).or_insert_with(|| {
            (
                group.iter().map(|g| vals[*g as usize].clone()).collect(),
                vec![Acc::default(); measures.len()],
            )
        });
        for ((field, m), acc) in measures.iter().zip(entry.1.iter_mut()) {
            let v = match field {
                None => {
                    acc.count += 1;
                    continue;
                }
                Some(f) => &vals[*f as usize],
            };
            if v.is_null() {
                continue;
            }
            if m.distinct {
                let key = key_of(std::slice::from_ref(v), &[0]).unwrap_or_default();
                if !acc.seen.get_or_insert_with(HashSet::new).insert(key) {
                    continue;
                }
            }
            acc.count += 1;
            acc.any = true;
            match m.func {
                // As in SQLite, an input that is not an integer (a real, a blob, or text that
                // is not entirely an integer) makes the sum a real.
                AggFunc::Sum | AggFunc::Avg => match to_numeric(v) {
                    Value::Integer(i)
                        if !matches!(v, Value::Integer(_))
                            && !matches!(v, Value::Text(s)
                                if matches!(parse_numeric(s), Some(Value::Integer(_)))) =>
                    {
                        if !acc.any_real {
                            acc.any_real = true;
                            acc.real_sum = acc.int_sum as f64;
                        }
                        acc.real_sum += i as f64;
                    }
                    Value::Integer(i) if !acc.any_real => match acc.int_sum.checked_add(i) {
                        Some(s) => acc.int_sum = s,
                        None if m.func == AggFunc::Sum => {
                            return Err(Error::new(
                                SqlState::ValueTooLong,
                                "integer overflow in sum",
                            ));
                        }
                        None => {
                            acc.any_real = true;
                            acc.real_sum = acc.int_sum as f64 + i as f64;
                        }
                    },
                    Value::Integer(i) => acc.real_sum += i as f64,
                    Value::Real(r) => {
                        if !acc.any_real {
                            acc.any_real = true;
                            acc.real_sum = acc.int_sum as f64;
                        }
                        acc.real_sum += r;
                    }
                    _ => {
                        // Text that is not a number counts as 0, as in SQLite, and makes it real.
                        if !acc.any_real {
                            acc.any_real = true;
                            acc.real_sum = acc.int_sum as f64;
                        }
                    }
                },
                AggFunc::Min | AggFunc::Max => {
                    let better = match &acc.best {
                        None => true,
                        Some(b) => {
                            let o = v.total_cmp(b);
                            if m.func == AggFunc::Min {
                                o.is_lt()
                            } else {
                                o.is_gt()
                            }
                        }
                    };
                    if better {
                        acc.best = Some(v.clone());
                    }
                }
                AggFunc::Count => {}
            }
        }
    }
    let mut columns: Vec<String> = a.group_by.clone();
    for m in &a.measures {
        columns.push(m.alias.clone().unwrap_or_else(|| {
            let f = match m.func {
                AggFunc::Count => "count",
                AggFunc::Sum => "sum",
                AggFunc::Avg => "avg",
                AggFunc::Min => "min",
                AggFunc::Max => "max",
            };
            format!(
                "{f}({}{})",
                if m.distinct { "DISTINCT " } else { "" },
                m.field.as_deref().unwrap_or("*")
            )
        }));
    }
    let mut out_rows = Vec::with_capacity(groups.len());
    for (_, (gvals, accs)) in groups {
        let mut row = gvals;
        for ((_, m), acc) in measures.iter().zip(accs) {
            row.push(match m.func {
                AggFunc::Count => Value::Integer(acc.count as i64),
                AggFunc::Sum if !acc.any => Value::Null,
                AggFunc::Sum if acc.any_real => Value::Real(acc.real_sum),
                AggFunc::Sum => Value::Integer(acc.int_sum),
                AggFunc::Avg if !acc.any => Value::Null,
                AggFunc::Avg => {
                    let s = if acc.any_real {
                        acc.real_sum
                    } else {
                        acc.int_sum as f64
                    };
                    Value::Real(s / acc.count as f64)
                }
                AggFunc::Min | AggFunc::Max => acc.best.unwrap_or(Value::Null),
            });
        }
        out_rows.push(row);
    }
    Ok(AggregateResult {
        columns,
        rows: out_rows,
        rows_examined: examined,
    })
}
