//! Meetings as VTC users see them: a unique, random 10-digit conference ID
//! per meeting, the block added to the invitation, and the alternate
//! dialling instructions page. Pure text; the store keeps the meetings.

use rand::Rng;

/// How room systems reach the gateway.
#[derive(Debug, Clone)]
pub struct Dialling {
    /// The CVI SIP domain (`cvi.example.org`).
    pub domain: String,
    /// The reception's user part (`teams`).
    pub reception: String,
    /// The test call's user part.
    pub test_call: String,
    pub tenant_key: Option<String>,
    /// Where the instructions pages are served, e.g. `https://cvi.example.org`.
    pub instructions_base: String,
}

/// A fresh conference ID: 10 random digits, never starting with 0 (some
/// keypads and spreadsheets drop it).
pub fn new_conference_id(rng: &mut impl Rng) -> String {
    let first = rng.random_range(1..=9u8);
    let rest: u64 = rng.random_range(0..1_000_000_000);
    format!("{first}{rest:09}")
}

/// True for something a user may have typed as an ID (10 digits).
pub fn is_conference_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `1234567890` as `1234 567 890`, the way invitations print it.
pub fn spaced(id: &str) -> String {
    // Anything else (a URL path may carry any UTF-8) is shown as given.
    if is_conference_id(id) {
        format!("{} {} {}", &id[..4], &id[4..7], &id[7..])
    } else {
        id.to_string()
    }
}

/// The link to a meeting's alternate dialling instructions.
pub fn instructions_url(d: &Dialling, id: &str) -> String {
    format!("{}/cvi/{id}", d.instructions_base.trim_end_matches('/'))
}

/// The block the organiser's invitation carries.
pub fn invite_block(d: &Dialling, id: &str) -> String {
    format!(
        "________________________________________________________________________________\n\
         Join with a video conferencing device\n\
         {reception}@{domain}\n\
         Video Conference ID: {spaced}\n\
         Alternate VTC dialling instructions: {url}\n",
        reception = d.reception,
        domain = d.domain,
        spaced = spaced(id),
        url = instructions_url(d, id)
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;line-height:1.5}}code{{font-size:1.1em}}</style>\
         </head><body>\n{body}\n</body></html>\n",
        html_escape(title)
    )
}

/// The alternate VTC dialling instructions of a meeting.
pub fn instructions_page(d: &Dialling, id: &str, subject: Option<&str>) -> String {
    let direct = format!("{id}@{}", d.domain);
    let mut ways = format!(
        "<li>Dial <code>{direct}</code> to join the meeting directly.</li>\n\
         <li>Or dial <code>{r}@{dom}</code> and enter the Video Conference ID <code>{spaced}</code> followed by <code>#</code> when asked.</li>\n",
        r = html_escape(&d.reception),
        dom = html_escape(&d.domain),
        spaced = spaced(id),
    );
    if let Some(t) = &d.tenant_key {
        ways.push_str(&format!(
            "<li>Or dial <code>{}.{id}@{}</code>.</li>\n",
            html_escape(t),
            html_escape(&d.domain)
        ));
    }
    let subject = subject
        .map(|s| format!("<p>Meeting: {}</p>\n", html_escape(s)))
        .unwrap_or_default();
    page(
        "Join with a video conferencing device",
        &format!(
            "<h1>Join with a video conferencing device</h1>\n{subject}<p>Video Conference ID: <strong>{}</strong></p>\n<ol>\n{ways}</ol>\n\
             <p>To check your device before the meeting, dial <code>{}@{}</code>: you will see and hear yourself.</p>\n",
            spaced(id),
            html_escape(&d.test_call),
            html_escape(&d.domain)
        ),
    )
}

/// The page for an ID that cannot be joined; `id` is shown when given
/// (the gateway's own pages give none: the page must not echo a guess).
pub fn not_found_page(id: &str, why: &str) -> String {
    let text = if id.is_empty() {
        why.to_string()
    } else {
        format!("{}: {why}", spaced(id))
    };
    page(
        "Meeting not found",
        &format!(
            "<h1>Meeting not found</h1>\n<p>{}</p>\n<p>Check the Video Conference ID in your invitation, or ask the organiser for a new one.</p>\n",
            html_escape(&text)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialling() -> Dialling {
        Dialling {
            domain: "cvi.example.org".into(),
            reception: "teams".into(),
            test_call: "test_call".into(),
            tenant_key: Some("12345678".into()),
            instructions_base: "https://cvi.example.org/".into(),
        }
    }

    #[test]
    fn ids_are_ten_random_digits() {
        let mut rng = rand::rng();
        let ids: Vec<String> = (0..1000).map(|_| new_conference_id(&mut rng)).collect();
        assert!(
            ids.iter()
                .all(|i| is_conference_id(i) && !i.starts_with('0'))
        );
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert!(distinct.len() > 990, "random, so (almost) never repeated");
        // Not sequential: consecutive IDs differ by more than one.
        let consecutive = ids.windows(2).filter(|w| {
            w[0].parse::<u64>()
                .unwrap()
                .abs_diff(w[1].parse::<u64>().unwrap())
                <= 1
        });
        assert_eq!(consecutive.count(), 0);
        assert!(
            !is_conference_id("123456789")
                && !is_conference_id("12345678901")
                && !is_conference_id("12345abcde")
        );
        assert_eq!(spaced("1234567890"), "1234 567 890");
        // Ten bytes but not ten digits: shown as given, never sliced.
        assert_eq!(spaced("ééééé"), "ééééé");
    }

    #[test]
    fn invite_and_page() {
        let b = invite_block(&dialling(), "1234567890");
        assert!(b.contains("Join with a video conferencing device\nteams@cvi.example.org\nVideo Conference ID: 1234 567 890\n"), "{b}");
        assert!(b.contains("https://cvi.example.org/cvi/1234567890"), "{b}");
        let p = instructions_page(&dialling(), "1234567890", Some("Ward <round>"));
        for want in [
            "1234567890@cvi.example.org",
            "teams@cvi.example.org",
            "12345678.1234567890@cvi.example.org",
            "test_call@cvi.example.org",
            "Ward &lt;round&gt;",
        ] {
            assert!(p.contains(want), "{want} not in {p}");
        }
        assert!(
            not_found_page("1234567890", "the meeting has ended")
                .contains("1234 567 890: the meeting has ended")
        );
    }
}
