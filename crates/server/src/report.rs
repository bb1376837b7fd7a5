//! The compliance evidence report (`POST /v1/exports {"format": "report"}`): one document a SOC 2
//! or HIPAA auditor reads, in HTML and PDF, beside one bundle they verify.
//!
//! A report job is an NDJSON export of the period (its file and bundle are the evidence), and
//! while its events stream past they are tallied here: events by capture class and action,
//! administrative and security actions, failed logins, alerts raised and sampling statements.
//! The server then checks the export it wrote with its own verifier (the check an auditor
//! repeats with `sealtrail verify-bundle`) and states the result with the signed checkpoint.
//! Both renderings are built from one list of [`Block`]s, so they never say different things.

use std::collections::BTreeMap;

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use sealtrail_model::limits::REPORT_LISTED_ACTIONS_MAX;
use sealtrail_model::{format_timestamp, StoredEvent};

/// Actions that change who may do what, or how the product guards data, besides the prefixes
/// in [`ADMIN_SECURITY_PREFIXES`]: the practice's always-logged administrative actions, and
/// Sealtrail's own changes of a tenant's settings.
const ADMIN_SECURITY_ACTIONS: [&str; 10] = [
    "password_change",
    "role_assign",
    "permission_grant",
    "api_key_create",
    "api_key_rotate",
    "config_change",
    "policy.update",
    "alert_rules.update",
    "delete",
    "export",
];
const ADMIN_SECURITY_PREFIXES: [&str; 4] = ["admin.", "security.", "api_key_", "export."];
const ALERT_ACTION: &str = "alert.triggered";
const SAMPLING_ACTION: &str = "sampling.statement";

/// One listed administrative or security action.
#[derive(Debug, Clone)]
struct Listed {
    seq: u64,
    timestamp: String,
    actor_id: String,
    action: String,
    resource: String,
    outcome: &'static str,
}

/// What a report counts, fed with the period's events in `seq` order.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    events: u64,
    by_class_action: BTreeMap<(u8, String), u64>,
    listed: Vec<Listed>,
    admin_security: u64,
    failed_logins: BTreeMap<String, u64>,
    alerts: BTreeMap<String, u64>,
    sampling_statements: u64,
    last_sampling_statement: Option<String>,
}

impl Tally {
    /// Counts one event of the period, of capture class `class`.
    pub(crate) fn add(&mut self, stored: &StoredEvent, class: u8) {
        let event = &stored.event;
        self.events += 1;
        *self
            .by_class_action
            .entry((class, event.action.clone()))
            .or_default() += 1;
        let action = event.action.as_str();
        if ADMIN_SECURITY_ACTIONS.contains(&action)
            || ADMIN_SECURITY_PREFIXES
                .iter()
                .any(|prefix| action.starts_with(prefix))
        {
            self.admin_security += 1;
            if self.listed.len() < REPORT_LISTED_ACTIONS_MAX {
                self.listed.push(Listed {
                    seq: stored.seq,
                    timestamp: format_timestamp(event.timestamp_ns),
                    actor_id: event.actor_id.clone(),
                    action: event.action.clone(),
                    resource: match &event.resource_id {
                        Some(id) => format!("{}/{id}", event.resource_type),
                        None => event.resource_type.clone(),
                    },
                    outcome: event.outcome.as_str(),
                });
            }
        }
        if (action == "login" || action.ends_with(".login")) && event.outcome.as_str() == "failure"
        {
            let day = format_timestamp(event.timestamp_ns)[..10].to_owned();
            *self.failed_logins.entry(day).or_default() += 1;
        }
        if action == ALERT_ACTION {
            let rule = event.resource_id.clone().unwrap_or_default();
            *self.alerts.entry(rule).or_default() += 1;
        }
        if action == SAMPLING_ACTION {
            self.sampling_statements += 1;
            self.last_sampling_statement = event.metadata.clone();
        }
    }
}

/// Everything a report states besides the tally.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) tenant_id: String,
    pub(crate) export_id: String,
    pub(crate) period: String,
    pub(crate) generated_at: String,
    pub(crate) retention: String,
    pub(crate) legal_hold: bool,
    pub(crate) tree_size: u64,
    pub(crate) checkpoint: String,
    pub(crate) file_sha256: String,
    /// The server's own check of the export, as `sealtrail verify-bundle` words it.
    pub(crate) verification: Result<String, String>,
    pub(crate) verifier_key: String,
}

/// The report's content, rendered by [`html`] and [`pdf`].
#[derive(Debug)]
enum Block {
    Heading(String),
    Text(String),
    Table {
        headers: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    },
    Pre(String),
}

fn blocks(context: &Context, tally: &Tally) -> Vec<Block> {
    let mut blocks = vec![
        Block::Heading(format!(
            "Audit evidence report: tenant {}",
            context.tenant_id
        )),
        Block::Text(format!(
            "Period: {}. Generated {} by Sealtrail (export {}).",
            context.period, context.generated_at, context.export_id
        )),
        Block::Heading("Verification".into()),
    ];
    blocks.push(Block::Text(match &context.verification {
        Ok(result) => format!("PASSED. {result}"),
        Err(fault) => format!("FAILED. {fault}"),
    }));
    blocks.push(Block::Text(format!(
        "The events of this period are in the accompanying file (NDJSON, SHA-256 {}), with a proof \
         bundle. Check both offline with the published verifier key, without trusting this \
         server: sealtrail verify-bundle <dir> --key '{}'",
        context.file_sha256, context.verifier_key
    )));
    blocks.push(Block::Text(format!(
        "Signed checkpoint of the tenant's log (tree size {}) the export was checked against:",
        context.tree_size
    )));
    blocks.push(Block::Pre(context.checkpoint.clone()));

    blocks.push(Block::Heading("Retention and legal hold".into()));
    blocks.push(Block::Text(format!(
        "Retention: {}. Legal hold: {}.",
        context.retention,
        if context.legal_hold {
            "on (nothing is deleted)"
        } else {
            "off"
        }
    )));

    blocks.push(Block::Heading(format!(
        "Events by capture class and action ({} events)",
        tally.events
    )));
    blocks.push(Block::Table {
        headers: vec!["class", "action", "events"],
        rows: tally
            .by_class_action
            .iter()
            .map(|((class, action), count)| {
                vec![class.to_string(), action.clone(), count.to_string()]
            })
            .collect(),
    });

    blocks.push(Block::Heading(format!(
        "Administrative and security actions ({})",
        tally.admin_security
    )));
    if tally.admin_security > tally.listed.len() as u64 {
        blocks.push(Block::Text(format!(
            "The first {} are listed; every one is in the accompanying file.",
            tally.listed.len()
        )));
    }
    blocks.push(Block::Table {
        headers: vec!["seq", "time", "actor", "action", "resource", "outcome"],
        rows: tally
            .listed
            .iter()
            .map(|listed| {
                vec![
                    listed.seq.to_string(),
                    listed.timestamp.clone(),
                    listed.actor_id.clone(),
                    listed.action.clone(),
                    listed.resource.clone(),
                    listed.outcome.to_owned(),
                ]
            })
            .collect(),
    });

    blocks.push(Block::Heading("Failed logins per day".into()));
    blocks.push(Block::Table {
        headers: vec!["day", "failed logins"],
        rows: tally
            .failed_logins
            .iter()
            .map(|(day, count)| vec![day.clone(), count.to_string()])
            .collect(),
    });

    blocks.push(Block::Heading(format!(
        "Alerts raised ({})",
        tally.alerts.values().sum::<u64>()
    )));
    blocks.push(Block::Table {
        headers: vec!["rule", "alerts"],
        rows: tally
            .alerts
            .iter()
            .map(|(rule, count)| vec![rule.clone(), count.to_string()])
            .collect(),
    });

    blocks.push(Block::Heading(format!(
        "Sampling statements ({})",
        tally.sampling_statements
    )));
    blocks.push(Block::Text(
        "Each statement is a signed count of the events seen and kept per day, class and action \
         (docs/FORMAT.md, \"Sampling\"). The latest in the period:"
            .into(),
    ));
    blocks.push(Block::Pre(
        tally
            .last_sampling_statement
            .clone()
            .unwrap_or_else(|| "none: every event of the period was kept".into()),
    ));
    blocks
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one self-contained HTML page.
pub(crate) fn html(context: &Context, tally: &Tally) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    );
    out.push_str(&format!(
        "<title>Audit evidence report: {}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;margin:.5rem 0}}th,td{{border:1px solid #999;padding:.2rem .5rem;text-align:left}}\
         pre{{background:#f4f4f4;padding:.5rem;overflow-x:auto;white-space:pre-wrap}}</style></head><body>\n",
        escape(&context.tenant_id)
    ));
    for (index, block) in blocks(context, tally).iter().enumerate() {
        match block {
            Block::Heading(text) if index == 0 => {
                out.push_str(&format!("<h1>{}</h1>\n", escape(text)))
            }
            Block::Heading(text) => out.push_str(&format!("<h2>{}</h2>\n", escape(text))),
            Block::Text(text) => out.push_str(&format!("<p>{}</p>\n", escape(text))),
            Block::Pre(text) => out.push_str(&format!("<pre>{}</pre>\n", escape(text))),
            Block::Table { headers, rows } => {
                out.push_str("<table><thead><tr>");
                for header in headers {
                    out.push_str(&format!("<th scope=\"col\">{}</th>", escape(header)));
                }
                out.push_str("</tr></thead><tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        out.push_str(&format!("<td>{}</td>", escape(cell)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table>\n");
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// A4 in points, the margin, and the type sizes of the PDF.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 48.0;
const TEXT_SIZE: f32 = 9.0;
const HEADING_SIZE: f32 = 13.0;
/// Courier's advance is 0.6 em, so a line of monospace text holds this many characters.
const MONO_CHARS: usize = ((PAGE_WIDTH - 2.0 * MARGIN) / (0.6 * TEXT_SIZE)) as usize;
/// Helvetica averages about half an em: a conservative wrap width for running text.
const TEXT_CHARS: usize = ((PAGE_WIDTH - 2.0 * MARGIN) / (0.55 * TEXT_SIZE)) as usize;

/// A laid-out line: its font (`F1` Helvetica, `F2` Helvetica-Bold, `F3` Courier), size, text.
struct Line {
    font: &'static [u8],
    size: f32,
    text: String,
}

/// Wraps `text` at `width` characters, on spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word = word.to_owned();
            while word.chars().count() > width {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                let rest = word.chars().skip(width).collect::<String>();
                lines.push(word.chars().take(width).collect());
                word = rest;
            }
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

/// Text in the standard fonts' WinAnsi encoding: Latin-1 as is, anything else `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .ok()
                .filter(|b| *b >= 0x20)
                .unwrap_or(b'?')
        })
        .collect()
}

fn lay_out(context: &Context, tally: &Tally) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut push = |font, size, text: String| lines.push(Line { font, size, text });
    for block in blocks(context, tally) {
        match block {
            Block::Heading(text) => {
                push(b"F1", TEXT_SIZE, String::new());
                push(b"F2", HEADING_SIZE, text);
            }
            Block::Text(text) => {
                for line in wrap(&text, TEXT_CHARS) {
                    push(b"F1", TEXT_SIZE, line);
                }
            }
            Block::Pre(text) => {
                for line in wrap(&text, MONO_CHARS) {
                    push(b"F3", TEXT_SIZE, line);
                }
            }
            Block::Table { headers, rows } => {
                let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
                for row in &rows {
                    for (width, cell) in widths.iter_mut().zip(row) {
                        *width = (*width).max(cell.chars().count());
                    }
                }
                let render = |cells: Vec<String>| {
                    cells
                        .iter()
                        .zip(&widths)
                        .map(|(cell, width)| format!("{cell:width$}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                let header = render(headers.iter().map(|h| (*h).to_owned()).collect());
                push(b"F3", TEXT_SIZE, header.clone());
                push(
                    b"F3",
                    TEXT_SIZE,
                    "-".repeat(header.chars().count().min(MONO_CHARS)),
                );
                if rows.is_empty() {
                    push(b"F3", TEXT_SIZE, "(none)".into());
                }
                for row in rows {
                    for line in wrap(&render(row), MONO_CHARS) {
                        push(b"F3", TEXT_SIZE, line);
                    }
                }
            }
        }
    }
    lines
}

/// The report as a PDF (A4, the standard fonts, text only).
pub(crate) fn pdf(context: &Context, tally: &Tally) -> Vec<u8> {
    let lines = lay_out(context, tally);
    // Pages: as many lines as fit, by their sizes.
    let mut pages: Vec<Vec<&Line>> = vec![Vec::new()];
    let mut used = 0.0;
    for line in &lines {
        let height = line.size * 1.3;
        if used + height > PAGE_HEIGHT - 2.0 * MARGIN {
            pages.push(Vec::new());
            used = 0.0;
        }
        used += height;
        pages.last_mut().expect("one page at least").push(line);
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [
        (b"F1", Ref::new(3), &b"Helvetica"[..]),
        (b"F2", Ref::new(4), &b"Helvetica-Bold"[..]),
        (b"F3", Ref::new(5), &b"Courier"[..]),
    ];
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|index| Ref::new(first_page + 2 * index as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    for (name, id, base) in fonts {
        let _ = name;
        pdf.type1_font(id)
            .base_font(Name(base))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (index, page_lines) in pages.iter().enumerate() {
        let page_id = page_ids[index];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .parent(tree)
            .contents(content_id);
        let mut resources = page.resources();
        let mut font_dict = resources.fonts();
        for (name, id, _) in fonts {
            font_dict.pair(Name(name), id);
        }
        font_dict.finish();
        resources.finish();
        page.finish();

        let mut content = Content::new();
        let mut y = PAGE_HEIGHT - MARGIN;
        for line in page_lines {
            y -= line.size * 1.3;
            content
                .begin_text()
                .set_font(Name(line.font), line.size)
                .next_line(MARGIN, y)
                .show(Str(&win_ansi(&line.text)))
                .end_text();
        }
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_and_lines_wrap_within_the_width() {
        let lines = wrap("a bb ccc dddddddddd e", 4);
        assert_eq!(lines, ["a bb", "ccc", "dddd", "dddd", "dd e"]);
        assert!(lines.iter().all(|line| line.chars().count() <= 4));
        assert_eq!(win_ansi("é€"), vec![0xe9, b'?']);
    }
}
