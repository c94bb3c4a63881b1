//! The one explicit list of destination templates: `(id, <id>.toml, <id>.hog)`, carried in the
//! binary. Adding a template adds one line here (keep the list sorted by id), its two files under
//! `destinations/templates/` and its case file under `destinations/tests/templates/`.

macro_rules! templates {
    ($($id:literal),* $(,)?) => {
        &[$((
            $id,
            include_str!(concat!("../../templates/", $id, ".toml")),
            include_str!(concat!("../../templates/", $id, ".hog")),
        )),*]
    };
}

/// `(id, manifest, code)` of every template, one per line (rustfmt would pack them).
#[rustfmt::skip]
pub(crate) const TEMPLATES: &[(&str, &str, &str)] = templates![
    "template-amplitude",
    "template-avo",
    "template-google-ads",
    "template-google-analytics-4",
    "template-google-chat",
    "template-june",
    "template-linkedin-ads",
    "template-mattermost",
    "template-meta-ads",
    "template-mixpanel",
    "template-pinterest-ads",
    "template-posthog-replicator",
    "template-reddit-conversions-api",
    "template-rudderstack",
    "template-segment",
    "template-snapchat-ads",
    "template-tiktok-ads",
    "template-webhook",
];
