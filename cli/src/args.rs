//! Argument parsers: names, durations and headers checked before anything is sent.

use std::time::Duration;

use ephemeral_bus::{BUS_NAME_RULE, BusName};

use crate::commands::Target;
use crate::exit::{Failure, USAGE};

/// A valid signal name or topic (the library's one naming rule).
pub(crate) fn name(s: &str) -> Result<String, String> {
    ephemeral::Name::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A room's name: a name as for signals, and an error that says it is the room's.
pub(crate) fn room_name(s: &str) -> Result<String, String> {
    named("room name", s)
}

/// A key of a store: a name as for signals, and an error that says it is the key.
pub(crate) fn key(s: &str) -> Result<String, String> {
    named("key", s)
}

/// A topic of `publish` or `request`: a name as for signals, and an error that says it is
/// the topic.
pub(crate) fn topic(s: &str) -> Result<String, String> {
    named("topic", s)
}

/// A store's name: a name as for signals, and an error that says it is the store's.
pub(crate) fn store_name(s: &str) -> Result<String, String> {
    named("store name", s)
}

/// The library's naming rule for something that is not a signal: its errors all begin
/// "signal name", which is wrong when the bad value was a room or a key, so that subject is
/// replaced by `what`.
fn named(what: &str, s: &str) -> Result<String, String> {
    name(s).map_err(|reason| match reason.strip_prefix("signal name ") {
        Some(rest) => format!("{what} {rest}"),
        None => reason,
    })
}

/// A bus name: one path-safe word (the bus's own rule, so nothing can land outside the
/// parent directory).
pub(crate) fn bus_name(s: &str) -> Result<BusName, String> {
    BusName::new(s).map_err(|e| e.to_string())
}

/// A human duration: `500ms`, `2s`, `1m30s`, `1h`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "`{s}`: durations must be positive: write one like 500ms, 2s, 1m30s or 1h"
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): write it like 500ms, 2s, 1m30s or 1h"))
}

/// A positive human duration.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "`{s}` is zero: durations must be positive, such as 1s"
        ));
    }
    Ok(d)
}

/// A `watch` pattern: any pattern but one that can match nothing at all.
pub(crate) fn watch_pattern(s: &str) -> Result<String, String> {
    if s.split(',').all(str::is_empty) {
        return Err(format!(
            "the pattern `{s}` is empty and matches nothing, so the watch would wait forever: \
             give one such as '*' (everything) or 'orders.*'"
        ));
    }
    Ok(s.to_owned())
}

/// A coordinator name pattern for `ops`: any pattern but one that can match nothing at all
/// (published names are names: no whitespace, no control characters).
pub(crate) fn coordinator_pattern(s: &str) -> Result<String, String> {
    if ephemeral::Pattern::new(s).is_empty() {
        return Err(format!(
            "the pattern `{s}` {}: give its published name or a pattern such as '*' (every \
             coordinator)",
            matches_nothing(s, "coordinator")
        ));
    }
    Ok(s.to_owned())
}

/// A signal name pattern for `signals`: any pattern but one that can match nothing at all.
pub(crate) fn signals_pattern(s: &str) -> Result<String, String> {
    if ephemeral::Pattern::new(s).is_empty() {
        return Err(format!(
            "the pattern `{s}` {}: give one such as '*' (every signal) or 'circuit.*'",
            matches_nothing(s, "signal")
        ));
    }
    Ok(s.to_owned())
}

/// Why a pattern matches no `what` (`Pattern::is_empty`): it is empty, or every alternative
/// holds whitespace or a control character, which no name does.
fn matches_nothing(s: &str, what: &str) -> String {
    if s.split(',').all(str::is_empty) {
        format!("is empty and matches no {what}")
    } else {
        format!(
            "matches no {what}: every alternative holds whitespace or a control character, \
             which no name does"
        )
    }
}

/// The bus name variable, read when `--bus` is not given.
pub(crate) const BUS_ENV: &str = "EPHEMERAL_BUS";

/// The NATS URL variable, read when neither `--bus` nor `--nats` is given.
pub(crate) const NATS_ENV: &str = "EPHEMERAL_NATS";

/// The NATS subject prefix variable, read when `--nats-prefix` is not given.
pub(crate) const NATS_PREFIX_ENV: &str = "EPHEMERAL_NATS_PREFIX";

/// The NATS credentials file variable, read when `--nats-creds` is not given.
pub(crate) const NATS_CREDS_ENV: &str = "EPHEMERAL_NATS_CREDS";

/// The variables of the TLS files, read when their flags are not given.
pub(crate) const NATS_TLS_CA_ENV: &str = "EPHEMERAL_NATS_TLS_CA";
/// See [`NATS_TLS_CA_ENV`].
pub(crate) const NATS_TLS_CERT_ENV: &str = "EPHEMERAL_NATS_TLS_CERT";
/// See [`NATS_TLS_CA_ENV`].
pub(crate) const NATS_TLS_KEY_ENV: &str = "EPHEMERAL_NATS_TLS_KEY";

/// The bus used when neither `--bus` nor `EPHEMERAL_BUS` names one.
pub(crate) const DEFAULT_BUS: &str = "default";

/// The options of every subcommand that uses a bus or NATS. Global, so that where a
/// subcommand has subcommands of its own (`kv get`, `room send`) they go before or after them.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BusArgs {
    /// The bus to use: one word of letters, digits, `-` and `_`, at most 32 bytes
    /// (default: $EPHEMERAL_BUS if set and not empty, else `default`). Its directory is
    /// $EPHEMERAL_BUS_DIR/ephemeral-<BUS>.
    #[arg(long, global = true, value_parser = bus_name)]
    bus: Option<BusName>,
    /// Open the bus even if nobody has yet (default: a missing bus is an error, exit 3).
    #[arg(long, global = true)]
    create: bool,
    /// Use a NATS server or cluster instead of a bus of this machine (default:
    /// $EPHEMERAL_NATS if set and not empty): nats://host:4222 (tls://… for TLS), several
    /// separated by commas, credentials in the URL if any (nats://user:pass@host:4222).
    #[arg(long, global = true, value_name = "URL", conflicts_with_all = ["bus", "create"])]
    nats: Option<String>,
    /// The NATS subject prefix the services use (default: $EPHEMERAL_NATS_PREFIX, else
    /// `ephemeral`).
    #[arg(long, global = true, value_name = "PREFIX", conflicts_with_all = ["bus", "create"])]
    nats_prefix: Option<String>,
    /// A NATS credentials (.creds) file (default: $EPHEMERAL_NATS_CREDS).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["bus", "create"])]
    nats_creds: Option<std::path::PathBuf>,
    /// The certificate authority (PEM) that signed the NATS server's certificate, when it is
    /// not one this machine trusts, such as a private CA (default: $EPHEMERAL_NATS_TLS_CA).
    /// Any TLS file makes the connection require TLS.
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["bus", "create"])]
    nats_tls_ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for a server that verifies its clients; with
    /// --nats-tls-key (default: $EPHEMERAL_NATS_TLS_CERT).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["bus", "create"])]
    nats_tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --nats-tls-cert (default: $EPHEMERAL_NATS_TLS_KEY).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["bus", "create"])]
    nats_tls_key: Option<std::path::PathBuf>,
    /// How long to wait for the NATS server to answer when connecting, e.g. 15s over a slow
    /// link (default: 5s).
    #[arg(long, global = true, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = positive_duration, conflicts_with_all = ["bus", "create"])]
    nats_connect_timeout: Option<Duration>,
}

/// A variable's value, `None` when unset or empty.
fn env_var(name: &str) -> Result<Option<String>, Failure> {
    let value = std::env::var_os(name).unwrap_or_default();
    let text = value.to_str().ok_or_else(|| {
        let rule = if name == BUS_ENV {
            BUS_NAME_RULE
        } else {
            "fix or unset it"
        };
        Failure::new(USAGE, format!("{name} is not valid UTF-8: {rule}"))
    })?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// A flag's value, else its variable's (`None` when neither is set, or the variable is
/// empty).
fn flag_or_env<T: From<String>>(flag: Option<T>, env: &str) -> Result<Option<T>, Failure> {
    match flag {
        Some(value) => Ok(Some(value)),
        None => Ok(env_var(env)?.map(T::from)),
    }
}

impl BusArgs {
    /// What to talk to: `--bus` or `--nats` when given (never both); else a non-empty
    /// `EPHEMERAL_NATS` or `EPHEMERAL_BUS` (not both); else the bus `default`.
    pub(crate) fn target(self) -> Result<Target, Failure> {
        // Where the URL came from, so that a bad one is said to be the variable's.
        let mut url_from_env = false;
        let nats = match (&self.bus, self.nats) {
            (Some(_), _) => None,
            (None, Some(url)) => Some(url),
            (None, None) => {
                url_from_env = true;
                let url = env_var(NATS_ENV)?;
                if url.is_some() && env_var(BUS_ENV)?.is_some() && !self.create {
                    return Err(Failure::new(
                        USAGE,
                        format!(
                            "both {BUS_ENV} and {NATS_ENV} are set, so it is unclear which to \
                             use: pass --bus NAME or --nats URL, or unset one of them"
                        ),
                    ));
                }
                // `--create` is about a bus: it chooses the bus over EPHEMERAL_NATS.
                url.filter(|_| !self.create)
            }
        };
        if let Some(url) = nats {
            if url.trim().is_empty() {
                let whose = if url_from_env {
                    format!("{NATS_ENV} is blank")
                } else {
                    "the NATS URL is empty".to_owned()
                };
                return Err(Failure::new(
                    USAGE,
                    format!("{whose}: give one such as nats://127.0.0.1:4222"),
                ));
            }
            let prefix_from_env = self.nats_prefix.is_none();
            let prefix = flag_or_env(self.nats_prefix, NATS_PREFIX_ENV)?;
            let creds = flag_or_env(self.nats_creds, NATS_CREDS_ENV)?;
            let tls = Tls {
                ca: flag_or_env(self.nats_tls_ca, NATS_TLS_CA_ENV)?,
                cert: flag_or_env(self.nats_tls_cert, NATS_TLS_CERT_ENV)?,
                key: flag_or_env(self.nats_tls_key, NATS_TLS_KEY_ENV)?,
            };
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(Failure::new(
                    USAGE,
                    "a client certificate needs its key and a key its certificate: give both \
                     --nats-tls-cert FILE and --nats-tls-key FILE (or EPHEMERAL_NATS_TLS_CERT \
                     and EPHEMERAL_NATS_TLS_KEY)",
                ));
            }
            return Ok(Target::Nats {
                url,
                url_from_env,
                prefix_from_env: prefix_from_env && prefix.is_some(),
                prefix,
                creds,
                tls,
                connect_timeout: self.nats_connect_timeout,
            });
        }
        if self.nats_prefix.is_some()
            || self.nats_creds.is_some()
            || self.nats_tls_ca.is_some()
            || self.nats_tls_cert.is_some()
            || self.nats_tls_key.is_some()
            || self.nats_connect_timeout.is_some()
        {
            return Err(Failure::new(
                USAGE,
                "--nats-prefix, --nats-creds, --nats-tls-* and --nats-connect-timeout only \
                 apply to NATS: add --nats URL (or set EPHEMERAL_NATS)",
            ));
        }
        let bus = match self.bus {
            Some(bus) => bus,
            None => {
                let name = env_var(BUS_ENV)?;
                let name = name.as_deref().unwrap_or(DEFAULT_BUS);
                bus_name(name).map_err(|e| Failure::new(USAGE, format!("{BUS_ENV}: {e}")))?
            }
        };
        Ok(Target::Bus {
            bus,
            create: self.create,
        })
    }
}

/// The TLS files of a NATS connection (flags, else their variables).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    /// The authority that signed the server's certificate.
    pub(crate) ca: Option<std::path::PathBuf>,
    /// This client's certificate and its key (both or neither).
    pub(crate) cert: Option<std::path::PathBuf>,
    pub(crate) key: Option<std::path::PathBuf>,
}

impl Tls {
    /// Whether any TLS file was given (TLS is then required).
    pub(crate) fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }
}

/// A `key=value` header (the value is sent as a string).
pub(crate) fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "`{s}` is not a header: write it as key=value, e.g. --header tenant=acme"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Component, Path};

    use ephemeral_bus::BusOptions;
    use proptest::prelude::*;

    proptest! {
        /// No `--bus` value the command accepts can name a directory outside the parent.
        #[test]
        fn an_accepted_bus_name_stays_inside_the_parent(
            name in prop_oneof![
                "[a-zA-Z0-9_-]{1,40}",
                "(\\.\\./|/|x|\\.|\u{0}|é|😀| |-|_){0,10}",
                any::<String>(),
            ]
        ) {
            let parent = Path::new("/parent/of/buses");
            if let Ok(bus) = super::bus_name(&name) {
                let dir = BusOptions::default().dir(parent).bus_dir(&bus);
                prop_assert_eq!(dir.parent(), Some(parent));
                let last = dir.components().next_back();
                prop_assert!(matches!(last, Some(Component::Normal(_))), "{:?}", dir);
                let escapes = name.contains(['/', '.', '\\', '\u{0}']);
                prop_assert!(!escapes, "accepted {:?}", name);
            }
        }
    }
}
