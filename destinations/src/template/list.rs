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
    "template-airtable",
    "template-algolia",
    "template-amplitude",
    "template-attio",
    "template-avo",
    "template-aws-kinesis",
    "template-braze",
    "template-brevo",
    "template-customerio",
    "template-discord",
    "template-freshdesk",
    "template-github",
    "template-google-ads",
    "template-google-analytics-4",
    "template-google-chat",
    "template-google-pubsub",
    "template-hubspot",
    "template-hubspot-company",
    "template-hubspot-event",
    "template-intercom",
    "template-intercom-event",
    "template-jira",
    "template-june",
    "template-klaviyo-event",
    "template-klaviyo-user",
    "template-linear",
    "template-linkedin-ads",
    "template-loops",
    "template-loops-event",
    "template-mailchimp",
    "template-mailjet-create-contact",
    "template-mailjet-update-contact-list",
    "template-make",
    "template-mattermost",
    "template-meta-ads",
    "template-microsoft-teams",
    "template-mixpanel",
    "template-n8n",
    "template-opsgenie",
    "template-pagerduty",
    "template-pinterest-ads",
    "template-pipedrive",
    "template-posthog-replicator",
    "template-postmark",
    "template-reddit-conversions-api",
    "template-resend",
    "template-rudderstack",
    "template-salesforce-create",
    "template-salesforce-update",
    "template-segment",
    "template-sendgrid",
    "template-slack",
    "template-snapchat-ads",
    "template-telegram",
    "template-tiktok-ads",
    "template-twilio",
    "template-webflow",
    "template-webhook",
    "template-zapier",
    "template-zendesk",
];
