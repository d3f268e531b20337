//! Indonesian and English: which one a request gets (`?lang=` first, then the
//! browser's `Accept-Language`, then Indonesian) and the texts the server renders
//! itself. The dashboard's own texts live in `assets/dashboard.js`.

use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "id" | "in" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn pick(query: Option<&str>, headers: &HeaderMap) -> Self {
        if let Some(lang) = query.and_then(Self::from_code) {
            return lang;
        }
        let mut choices: Vec<(f32, Lang)> = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let lang = Self::from_code(pieces.next()?)?;
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        choices.sort_by(|a, b| b.0.total_cmp(&a.0));
        choices.first().map(|(_, l)| *l).unwrap_or(Lang::Id)
    }

    pub fn t(self, key: &str) -> &'static str {
        let (id, en) = match key {
            "title" => ("AbTrack Notify", "AbTrack Notify"),
            "login_heading" => ("Masuk ke dasbor", "Log in to the dashboard"),
            "password" => ("Kata sandi", "Password"),
            "login_button" => ("Masuk", "Log in"),
            "login_wrong" => ("Kata sandi salah.", "Wrong password."),
            "login_too_many" => (
                "Terlalu banyak percobaan. Tunggu satu menit lalu coba lagi.",
                "Too many attempts. Wait a minute and try again.",
            ),
            _ => ("", ""),
        };
        match self {
            Lang::Id => id,
            Lang::En => en,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn query_then_browser_then_indonesian() {
        assert_eq!(Lang::pick(Some("en"), &accept("id-ID")), Lang::En);
        assert_eq!(Lang::pick(Some("xx"), &accept("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::pick(None, &accept("fr;q=1, en;q=0.3, id;q=0.8")),
            Lang::Id
        );
        assert_eq!(Lang::pick(None, &HeaderMap::new()), Lang::Id);
    }
}
