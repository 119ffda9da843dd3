//! The command-line options.

use std::time::Duration;

use crate::servers::{Kind, KINDS};

#[derive(Debug, Clone)]
pub struct Options {
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
    /// `healthy`, `storm`, `install` or `sigterm`: run that part alone.
    pub only: Option<String>,
    /// The servers to run, by name; all when empty.
    pub servers: Vec<String>,
}

impl Options {
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        KINDS.into_iter().filter(|kind| {
            self.servers.is_empty() || self.servers.iter().any(|name| name == kind.arg())
        })
    }

    pub fn from_args(args: &[String]) -> Options {
        let mut options = Options {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(5),
            rounds: 3,
            only: None,
            servers: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = || -> f64 {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{arg} takes a number"))
            };
            match arg.as_str() {
                "--seconds" => options.measure = Duration::from_secs_f64(number()),
                "--warmup" => options.warmup = Duration::from_secs_f64(number()),
                "--rounds" => options.rounds = (number() as usize).max(1),
                "--only" => options.only = args.next().cloned(),
                "--servers" => {
                    options.servers = args
                        .next()
                        .map(|names| names.split(',').map(str::to_owned).collect())
                        .unwrap_or_default()
                }
                // cargo passes `--bench` to bench targets; nothing else is expected.
                _ => {}
            }
        }
        options
    }
}
