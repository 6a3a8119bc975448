//! EXPLAIN QUERY PLAN for SELECT statements: the compiled plan described in SQLite's row shape
//! (id, parent, notused, detail), one row per step, nested through `parent`. The wording
//! follows SQLite's (`SCAN t`, `SEARCH t USING INDEX ix (a=?)`, `USE TEMP B-TREE FOR ORDER BY`)
//! so tools that read it keep working; the steps are ORMDB's own, so the text can differ from
//! what SQLite prints for the same query. Subqueries inside expressions are not listed.

use super::query::{Access, Body, Query, SelectPlan, SetOp, SourceKind};

struct Rows {
    rows: Vec<(i64, i64, String)>,
}

impl Rows {
    fn push(&mut self, parent: i64, detail: String) -> i64 {
        let id = self.rows.len() as i64 + 1;
        self.rows.push((id, parent, detail));
        id
    }

    fn query(&mut self, q: &Query, parent: i64) {
        self.body(&q.body, parent);
        let presorted = matches!(&q.body, Body::Select(p) if p.presorted);
        if !q.order.is_empty() && !presorted {
            self.push(parent, "USE TEMP B-TREE FOR ORDER BY".into());
        }
    }

    fn body(&mut self, b: &Body, parent: i64) {
        match b {
            Body::Select(p) => self.select(p, parent),
            Body::Values(rows) => {
                self.push(parent, format!("SCAN {} CONSTANT ROW(S)", rows.len()));
            }
            Body::SetOp {
                op,
                all,
                left,
                right,
            } => {
                let id = self.push(parent, "COMPOUND QUERY".into());
                let l = self.push(id, "LEFT-MOST SUBQUERY".into());
                self.body(left, l);
                let how = match (op, all) {
                    (SetOp::Union, true) => "UNION ALL",
                    (SetOp::Union, false) => "UNION USING TEMP B-TREE",
                    (SetOp::Intersect, _) => "INTERSECT USING TEMP B-TREE",
                    (SetOp::Except, _) => "EXCEPT USING TEMP B-TREE",
                };
                let r = self.push(id, how.into());
                self.body(right, r);
            }
            Body::Query(q) => self.query(q, parent),
            Body::Recursive { init, step, .. } => {
                let s = self.push(parent, "SETUP".into());
                self.body(init, s);
                let r = self.push(parent, "RECURSIVE STEP".into());
                self.body(step, r);
            }
        }
    }

    fn select(&mut self, p: &SelectPlan, parent: i64) {
        if p.sources.is_empty() {
            self.push(parent, "SCAN CONSTANT ROW".into());
        }
        for (i, s) in p.sources.iter().enumerate() {
            let join = if i > 0 && s.join == super::query::JoinKind::Left {
                " LEFT-JOIN"
            } else {
                ""
            };
            match &s.kind {
                SourceKind::Table { name } => {
                    let detail = match &s.access {
                        Access::Scan => format!("SCAN {name}{join}"),
                        Access::RowId(_) => {
                            format!("SEARCH {name} USING INTEGER PRIMARY KEY (rowid=?){join}")
                        }
                        Access::RowIdRange { lo, hi } => format!(
                            "SEARCH {name} USING INTEGER PRIMARY KEY ({}){join}",
                            bounds("rowid", lo.is_some(), hi.is_some())
                        ),
                        Access::Index { name: ix, .. } => {
                            format!("SEARCH {name} USING INDEX {ix} (key=?){join}")
                        }
                        // Read in index order for ORDER BY, the whole index.
                        Access::IndexRange {
                            name: ix,
                            eq,
                            lo: None,
                            hi: None,
                            order: Some(_),
                        } if eq.is_empty() => format!("SCAN {name} USING INDEX {ix}{join}"),
                        Access::IndexRange {
                            name: ix, eq, lo, hi, ..
                        } => {
                            let mut terms: Vec<String> = vec!["key=?".into(); eq.len().min(1)];
                            if lo.is_some() || hi.is_some() {
                                terms.push(bounds("key", lo.is_some(), hi.is_some()));
                            }
                            format!(
                                "SEARCH {name} USING INDEX {ix} ({}){join}",
                                terms.join(" AND ")
                            )
                        }
                    };
                    self.push(parent, detail);
                }
                SourceKind::SchemaTable { temp } => {
                    let t = if temp.is_some() {
                        "sqlite_temp_schema"
                    } else {
                        "sqlite_schema"
                    };
                    self.push(parent, format!("SCAN {t}{join}"));
                }
                SourceKind::SequenceTable => {
                    self.push(parent, format!("SCAN sqlite_sequence{join}"));
                }
                SourceKind::Query(q) => {
                    let id = self.push(parent, "MATERIALIZE (subquery)".into());
                    self.query(q, id);
                    self.push(parent, format!("SCAN (subquery){join}"));
                }
                SourceKind::Cte { query, .. } => {
                    let id = self.push(parent, "MATERIALIZE (common table expression)".into());
                    self.query(query, id);
                    self.push(parent, format!("SCAN (common table expression){join}"));
                }
            }
        }
        if p.aggregate && !p.group_by.is_empty() {
            self.push(parent, "USE TEMP B-TREE FOR GROUP BY".into());
        }
        if p.distinct {
            self.push(parent, "USE TEMP B-TREE FOR DISTINCT".into());
        }
    }
}

fn bounds(what: &str, lo: bool, hi: bool) -> String {
    match (lo, hi) {
        (true, true) => format!("{what}>? AND {what}<?"),
        (true, false) => format!("{what}>?"),
        (false, true) => format!("{what}<?"),
        (false, false) => what.to_string(),
    }
}

/// The (id, parent, detail) rows of `q`'s plan; parent 0 is the top level.
pub fn plan_rows(q: &Query) -> Vec<(i64, i64, String)> {
    let mut r = Rows { rows: Vec::new() };
    r.query(q, 0);
    r.rows
}
