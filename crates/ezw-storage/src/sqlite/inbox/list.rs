//! The inbox list. Conversations come most recently active first (`COALESCE(last_message_at,
//! 0) DESC, seq DESC`); the cursor is that key of the last row. Every filter shape reads an
//! index in that order from the cursor on (see migration 0007), and several visible lines are
//! one `LIMIT`ed subquery per line merged, so a page reads about `limit` rows per line however
//! large the inbox is. A search (`LIKE` on the contact's names, which no index serves) reads
//! conversations in order until the page is full.

use ezw_core::ids::{LineId, OrganizationId};
use ezw_core::model::InboxConversation;
use ezw_core::ports::{ConversationQuery, Page};
use ezw_core::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::super::db_err;
use super::super::rows::{self, CONVERSATION_COLUMNS};

/// The order key, written exactly as the indexes are.
const KEY: &str = "COALESCE(c.last_message_at, 0)";
/// Up to this many visible lines are read one subquery per line; more are one ordered scan of
/// the organization's conversations that skips the other lines.
const MAX_LINE_SUBQUERIES: usize = 16;

fn parse_cursor(cursor: &str) -> Result<(i64, i64)> {
    let bad = || Error::invalid("invalid_cursor", "cursor is not one this API returned");
    let (at, seq) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?))
}

/// `%text%` for `LIKE ... ESCAPE '\'`, with the wildcards of `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Which conversations one `SELECT` reads.
enum Scope<'a> {
    /// The whole organization.
    Organization,
    /// One line.
    Line(&'a LineId),
    /// The organization's conversations on these lines (read in the organization's order).
    Lines(&'a [&'a LineId]),
}

/// What a `SELECT` returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// The conversation, its contact's names and the order key (the page's rows).
    Full,
    /// `seq` and the order key `k` (one line's candidates, merged before the rows are read).
    Keys,
}

/// One `SELECT` of the list, with the query's filters, in order, from the cursor, `fetch` rows.
fn select(
    org: &OrganizationId,
    scope: &Scope<'_>,
    columns: Columns,
    q: &ConversationQuery,
    cursor: Option<(i64, i64)>,
    fetch: i64,
    args: &mut Vec<Value>,
) -> String {
    // With one line the organization check is a filter only (`+`), so the planner reads that
    // line's indexes rather than the organization's.
    let org_check = if matches!(scope, Scope::Line(_)) { "+c.org_id" } else { "c.org_id" };
    let mut sql = match columns {
        Columns::Full => format!(
            "SELECT {CONVERSATION_COLUMNS}, ct.display_name, ct.profile_name, {KEY} AS k
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE {org_check} = ?"
        ),
        Columns::Keys if q.search.is_some() => format!(
            "SELECT c.seq AS seq, {KEY} AS k
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE {org_check} = ?"
        ),
        Columns::Keys => format!("SELECT c.seq AS seq, {KEY} AS k FROM conversations c WHERE {org_check} = ?"),
    };
    args.push(Value::Text(org.as_str().to_owned()));
    match scope {
        Scope::Organization => {}
        Scope::Line(line) => {
            sql.push_str(" AND c.line_id = ?");
            args.push(Value::Text(line.as_str().to_owned()));
        }
        Scope::Lines(lines) => {
            // `+` keeps the planner on the organization's ordered index.
            sql.push_str(&format!(" AND +c.line_id IN ({})", vec!["?"; lines.len()].join(", ")));
            args.extend(lines.iter().map(|l| Value::Text(l.as_str().to_owned())));
        }
    }
    if let Some(assignee) = &q.assignee_id {
        sql.push_str(" AND c.assignee_id = ?");
        args.push(Value::Text(assignee.as_str().to_owned()));
    } else if q.unassigned {
        sql.push_str(" AND c.assignee_id IS NULL");
    }
    if let Some(status) = &q.status_key {
        sql.push_str(" AND c.status_key = ?");
        args.push(Value::Text(status.clone()));
    }
    if let Some(text) = &q.search {
        let pattern = like_pattern(text);
        sql.push_str(" AND (ct.display_name LIKE ? ESCAPE '\\' OR ct.profile_name LIKE ? ESCAPE '\\'");
        args.push(Value::Text(pattern.clone()));
        args.push(Value::Text(pattern));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            sql.push_str(" OR c.contact_phone LIKE ?");
            args.push(Value::Text(format!("%{digits}%")));
        }
        sql.push(')');
    }
    if let Some((at, seq)) = cursor {
        // Written as a range on the key (usable by the index) plus the tie-break.
        sql.push_str(&format!(" AND {KEY} <= ? AND ({KEY} < ? OR c.seq < ?)"));
        args.extend([Value::Integer(at), Value::Integer(at), Value::Integer(seq)]);
    }
    sql.push_str(&format!(" ORDER BY {KEY} DESC, c.seq DESC LIMIT ?"));
    args.push(Value::Integer(fetch));
    sql
}

pub(crate) fn list_inbox(
    conn: &Connection,
    org: &OrganizationId,
    q: &ConversationQuery,
) -> Result<Page<InboxConversation>> {
    let limit = q.limit.clamp(1, 200);
    let fetch = i64::from(limit) + 1;
    let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    // The lines to read: `None` is the whole organization.
    let lines: Option<Vec<&LineId>> = match (&q.line_id, &q.visible_lines) {
        (Some(line), Some(visible)) => Some(if visible.contains(line) { vec![line] } else { Vec::new() }),
        (Some(line), None) => Some(vec![line]),
        (None, Some(visible)) => Some(visible.iter().collect()),
        (None, None) => None,
    };
    let mut args = Vec::new();
    let sql = match lines.as_deref() {
        Some([]) => return Ok(Page { items: Vec::new(), next_cursor: None }),
        None => select(org, &Scope::Organization, Columns::Full, q, cursor, fetch, &mut args),
        Some([line]) => select(org, &Scope::Line(line), Columns::Full, q, cursor, fetch, &mut args),
        Some(lines) if lines.len() > MAX_LINE_SUBQUERIES => {
            select(org, &Scope::Lines(lines), Columns::Full, q, cursor, fetch, &mut args)
        }
        Some(lines) => {
            // Each line's first `fetch` keys, merged; then only the page's rows are read.
            let parts: Vec<String> = lines
                .iter()
                .map(|line| {
                    let part = select(org, &Scope::Line(line), Columns::Keys, q, cursor, fetch, &mut args);
                    format!("SELECT * FROM ({part})")
                })
                .collect();
            args.push(Value::Integer(fetch));
            format!(
                "SELECT {CONVERSATION_COLUMNS}, ct.display_name, ct.profile_name, top.k
                 FROM ({} ORDER BY k DESC, seq DESC LIMIT ?) top
                 JOIN conversations c ON c.seq = top.seq JOIN contacts ct ON ct.id = c.contact_id
                 ORDER BY top.k DESC, top.seq DESC",
                parts.join(" UNION ALL ")
            )
        }
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let mut items: Vec<(InboxConversation, i64, i64)> = stmt
        .query_map(params_from_iter(args), |r| {
            let item = InboxConversation {
                conversation: rows::conversation(r)?,
                contact_display_name: r.get(12)?,
                contact_profile_name: r.get(13)?,
            };
            Ok((item, r.get(14)?, r.get(11)?))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|(_, key, seq)| format!("{key}.{seq}")) } else { None };
    Ok(Page { items: items.into_iter().map(|(c, _, _)| c).collect(), next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("dana"), "%dana%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn cursors_parse_or_are_invalid() {
        assert_eq!(parse_cursor("1700.42").unwrap(), (1700, 42));
        for bad in ["", "1700", "a.b", "1.2.3", "99999999999999999999.1"] {
            assert_eq!(parse_cursor(bad).unwrap_err().code(), "invalid_cursor", "{bad}");
        }
    }
}
