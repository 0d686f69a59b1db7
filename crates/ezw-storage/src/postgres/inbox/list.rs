//! The inbox list. Conversations come most recently active first (`COALESCE(last_message_at,
//! 0) DESC, seq DESC`); the cursor is that key of the last row (`key.seq`). Every filter shape
//! reads one of the `conversations_*_recent` indexes in that order from the cursor on, and
//! several visible lines are one `LIMIT`ed subquery per line merged, so a page reads about
//! `limit` rows per line however large the inbox is. A search (`ILIKE ... ESCAPE E'\\'` on
//! the contact's names, which no index serves) reads conversations in order until the page is full.

use ezw_core::ids::{LineId, OrganizationId};
use ezw_core::model::InboxConversation;
use ezw_core::ports::{ConversationQuery, Page};
use ezw_core::Result;
use tokio_postgres::types::ToSql;

use super::super::rows::{self, get, CONVERSATION_COLUMNS};
use super::super::{db_err, Db};
use super::invalid_cursor;

/// The order key, written exactly as the indexes are.
const KEY: &str = "COALESCE(c.last_message_at, 0)";
/// Up to this many visible lines are read one subquery per line; more are one ordered scan of
/// the organization's conversations that skips the other lines.
const MAX_LINE_SUBQUERIES: usize = 16;
/// Columns in `CONVERSATION_COLUMNS`; the contact's names and the key follow.
const CONVERSATION_COLUMN_COUNT: usize = 12;

/// Parses a `key.seq` cursor.
fn parse_cursor(cursor: &str) -> Result<(i64, i64)> {
    let (at, seq) = cursor.split_once('.').ok_or_else(invalid_cursor)?;
    Ok((at.parse().map_err(|_| invalid_cursor())?, seq.parse().map_err(|_| invalid_cursor())?))
}

/// `%text%` for `ILIKE ... ESCAPE '\'`, with the wildcards of `text` escaped.
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

/// A bound parameter of the list's query.
enum Arg {
    /// A TEXT value.
    Text(String),
    /// A TEXT[] value.
    Texts(Vec<String>),
    /// A BIGINT value.
    Int(i64),
}

impl Arg {
    /// The value as a parameter.
    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Arg::Text(s) => s,
            Arg::Texts(v) => v,
            Arg::Int(i) => i,
        }
    }
}

/// Binds `arg` and returns its placeholder (`$n`).
fn bind(args: &mut Vec<Arg>, arg: Arg) -> String {
    args.push(arg);
    format!("${}", args.len())
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
    args: &mut Vec<Arg>,
) -> String {
    let org_param = bind(args, Arg::Text(org.as_str().to_owned()));
    let mut sql = match columns {
        Columns::Full => format!(
            "SELECT {CONVERSATION_COLUMNS}, ct.display_name, ct.profile_name, {KEY} AS k
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE c.org_id = {org_param}"
        ),
        Columns::Keys if q.search.is_some() => format!(
            "SELECT c.seq AS seq, {KEY} AS k
             FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE c.org_id = {org_param}"
        ),
        Columns::Keys => format!("SELECT c.seq AS seq, {KEY} AS k FROM conversations c WHERE c.org_id = {org_param}"),
    };
    match scope {
        Scope::Organization => {}
        Scope::Line(line) => {
            let p = bind(args, Arg::Text(line.as_str().to_owned()));
            sql.push_str(&format!(" AND c.line_id = {p}"));
        }
        Scope::Lines(lines) => {
            let p = bind(args, Arg::Texts(lines.iter().map(|l| l.as_str().to_owned()).collect()));
            sql.push_str(&format!(" AND c.line_id = ANY({p})"));
        }
    }
    if let Some(assignee) = &q.assignee_id {
        let p = bind(args, Arg::Text(assignee.as_str().to_owned()));
        sql.push_str(&format!(" AND c.assignee_id = {p}"));
    } else if q.unassigned {
        sql.push_str(" AND c.assignee_id IS NULL");
    }
    if let Some(status) = &q.status_key {
        let p = bind(args, Arg::Text(status.clone()));
        sql.push_str(&format!(" AND c.status_key = {p}"));
    }
    if let Some(text) = &q.search {
        let p = bind(args, Arg::Text(like_pattern(text)));
        sql.push_str(&format!(
            " AND (ct.display_name ILIKE {p} ESCAPE E'\\\\' OR ct.profile_name ILIKE {p} ESCAPE E'\\\\'"
        ));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            let p = bind(args, Arg::Text(format!("%{digits}%")));
            sql.push_str(&format!(" OR c.contact_phone LIKE {p}"));
        }
        sql.push(')');
    }
    if let Some((at, seq)) = cursor {
        // Written as a range on the key (an index condition) plus the tie-break.
        let at = bind(args, Arg::Int(at));
        let seq = bind(args, Arg::Int(seq));
        sql.push_str(&format!(" AND {KEY} <= {at} AND ({KEY} < {at} OR c.seq < {seq})"));
    }
    let p = bind(args, Arg::Int(fetch));
    sql.push_str(&format!(" ORDER BY {KEY} DESC, c.seq DESC LIMIT {p}"));
    sql
}

/// Conversations with their contacts' names, most recently active first.
pub(crate) async fn list_inbox(
    db: &Db,
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
                    format!("({})", select(org, &Scope::Line(line), Columns::Keys, q, cursor, fetch, &mut args))
                })
                .collect();
            let p = bind(&mut args, Arg::Int(fetch));
            format!(
                "SELECT {CONVERSATION_COLUMNS}, ct.display_name, ct.profile_name, top.k
                 FROM (SELECT u.seq, u.k FROM ({}) u ORDER BY u.k DESC, u.seq DESC LIMIT {p}) top
                 JOIN conversations c ON c.seq = top.seq JOIN contacts ct ON ct.id = c.contact_id
                 ORDER BY top.k DESC, top.seq DESC",
                parts.join(" UNION ALL ")
            )
        }
    };
    let conn = db.conn().await?;
    let stmt = conn.prepare_cached(&sql).await.map_err(db_err)?;
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_param).collect();
    let found = conn.query(&stmt, &params).await.map_err(db_err)?;
    let n = CONVERSATION_COLUMN_COUNT;
    let mut items = found
        .iter()
        .map(|r| {
            let item = InboxConversation {
                conversation: rows::conversation(r)?,
                contact_display_name: get(r, n)?,
                contact_profile_name: get(r, n + 1)?,
            };
            Ok((item, get::<i64>(r, n + 2)?, get::<i64>(r, n - 1)?))
        })
        .collect::<Result<Vec<_>>>()?;
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
        for bad in ["", "1700", "a.b", "1.2.3", "99999999999999999999.1", "not-a-cursor"] {
            assert_eq!(parse_cursor(bad).unwrap_err().code(), "invalid_cursor", "{bad}");
        }
    }

    #[test]
    fn placeholders_follow_the_bound_arguments() {
        let org = OrganizationId::from_raw("org_1".to_owned());
        let line = LineId::from_raw("line_1".to_owned());
        let q = ConversationQuery { search: Some("dana".into()), ..ConversationQuery::default() };
        let mut args = Vec::new();
        let sql = select(&org, &Scope::Line(&line), Columns::Keys, &q, Some((5, 7)), 11, &mut args);
        assert_eq!(args.len(), 6, "{sql}");
        assert!(sql.contains("c.line_id = $2") && sql.contains("LIMIT $6"), "{sql}");
        assert!(sql.contains("ILIKE $3 ESCAPE E'\\\\'"), "{sql}");
    }
}
