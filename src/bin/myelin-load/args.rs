//! Command-line flags of `myelin-load`: a small hand-rolled parser over `--key value` (or
//! `--key=value`) pairs, every flag with a default, and the checks that keep a run sensible.

use std::fmt;

/// The usage text, printed by `--help` and after a bad flag.
pub const USAGE: &str = "usage: myelin-load [--flag value]...

Loads a Matrix homeserver over the client-server API and prints one JSON line per scenario
on stdout, then a table on stderr.

  --url URL                    base URL of the homeserver, http only (default http://127.0.0.1:8008)
  --server-name NAME           the server name (default: read from the first registered user ID)
  --users N                    users to register (default 20)
  --joiners K                  users that join the test room, creator included (default: --users)
  --messages M                 messages sent by the send scenario (default 2000)
  --concurrency C              requests in flight at once (default 16)
  --rounds R                   send-to-sync latency rounds (default 200)
  --rooms-for-initial-sync N   rooms of the initial_sync user (default 100)
  --idle-clients N             idle long-polling /sync clients held by idle_sync (default 0: skip)
  --server-pid PID             report the server's RSS and CPU time deltas from /proc/PID
  --scenarios a,b,c            scenarios to run (default: all; idle_sync only with --idle-clients)
  --timeout-secs S             per-request timeout in seconds, 1 to 86400 (default 60)
  --prefix P                   username prefix (default: load plus 6 random hex digits)
  --remote-url URL             a second homeserver federating with the first, http only: runs
                               remote_join, to_remote_sync and from_remote_sync
  --help                       this text

Scenarios: register, create_join, send, send_to_sync, initial_sync, idle_sync, and with
--remote-url: remote_join (a user of the remote server joins rooms of user 0, --rounds of
them, at most 20), to_remote_sync and from_remote_sync (send_to_sync between a user of each
server, both ways).
A scenario that needs users or the test room sets them up first, unmeasured, when the
scenario that measures that step is not selected.";

/// One measured scenario, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Registers `--users` users.
    Register,
    /// User 0 creates a room; the other `--joiners` join it.
    CreateJoin,
    /// `--messages` messages from `--concurrency` concurrent senders.
    Send,
    /// Latency from sending a message to seeing it in another user's `/sync`.
    SendToSync,
    /// Full `/sync` of a user in `--rooms-for-initial-sync` rooms.
    InitialSync,
    /// `--idle-clients` long polls held open.
    IdleSync,
    /// A user of `--remote-url` joins rooms of user 0 (time to join a remote room).
    RemoteJoin,
    /// send_to_sync from user 0 to the remote user.
    ToRemoteSync,
    /// send_to_sync from the remote user to user 0.
    FromRemoteSync,
}

impl Scenario {
    /// Every scenario, in running order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Register,
        Scenario::CreateJoin,
        Scenario::Send,
        Scenario::SendToSync,
        Scenario::InitialSync,
        Scenario::IdleSync,
        Scenario::RemoteJoin,
        Scenario::ToRemoteSync,
        Scenario::FromRemoteSync,
    ];

    /// Whether the scenario needs a second server (`--remote-url`).
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            Scenario::RemoteJoin | Scenario::ToRemoteSync | Scenario::FromRemoteSync
        )
    }

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Register => "register",
            Scenario::CreateJoin => "create_join",
            Scenario::Send => "send",
            Scenario::SendToSync => "send_to_sync",
            Scenario::InitialSync => "initial_sync",
            Scenario::IdleSync => "idle_sync",
            Scenario::RemoteJoin => "remote_join",
            Scenario::ToRemoteSync => "to_remote_sync",
            Scenario::FromRemoteSync => "from_remote_sync",
        }
    }

    /// The scenario called `name`, if any.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parsed flags of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    /// The server name given with `--server-name`; `None`: discovered at registration.
    pub server_name: Option<String>,
    /// Users to register (at least 1).
    pub users: usize,
    /// Members of the test room, creator included (1 to `users`).
    pub joiners: usize,
    /// Messages of the send scenario.
    pub messages: usize,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
    /// Rounds of send_to_sync; initial_sync also measures at most this many syncs (and 20).
    pub rounds: usize,
    /// Rooms of the initial_sync user.
    pub rooms_for_initial_sync: usize,
    /// Idle long polls of idle_sync; 0 skips it.
    pub idle_clients: usize,
    /// The server's process ID, for RSS and CPU figures.
    pub server_pid: Option<u32>,
    /// Scenarios to run, in running order, without duplicates.
    pub scenarios: Vec<Scenario>,
    /// Per-request timeout in seconds (long polls get their own, longer one).
    pub timeout_secs: u64,
    /// Username prefix; user `i` is `<prefix>-<i>`.
    pub prefix: String,
    /// A second homeserver federating with the first (the remote scenarios).
    pub remote_url: Option<String>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Print the usage text and exit successfully.
    Help,
    /// Run the load with these flags.
    Run(Args),
}

/// Parses the flags after the program name. `random_prefix` supplies the default prefix, so
/// tests stay deterministic. An error is a message for the user, without the usage text.
pub fn parse<I>(args: I, random_prefix: impl FnOnce() -> String) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
{
    let mut url = "http://127.0.0.1:8008".to_owned();
    let mut server_name = None;
    let mut users = 20;
    let mut joiners = None;
    let mut messages = 2000;
    let mut concurrency = 16;
    let mut rounds = 200;
    let mut rooms_for_initial_sync = 100;
    let mut idle_clients = 0;
    let mut server_pid = None;
    let mut scenarios = None;
    let mut timeout_secs = 60;
    let mut prefix = None;
    let mut remote_url = None;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (key, value) = match flag.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => {
                let v = args
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_owned(), v)
            }
        };
        match key.as_str() {
            "url" => url = value.trim_end_matches('/').to_owned(),
            "server-name" => server_name = Some(value),
            "users" => users = number(&key, &value)?,
            "joiners" => joiners = Some(number(&key, &value)?),
            "messages" => messages = number(&key, &value)?,
            "concurrency" => concurrency = number(&key, &value)?,
            "rounds" => rounds = number(&key, &value)?,
            "rooms-for-initial-sync" => rooms_for_initial_sync = number(&key, &value)?,
            "idle-clients" => idle_clients = number(&key, &value)?,
            "server-pid" => server_pid = Some(number(&key, &value)?),
            "timeout-secs" => timeout_secs = number(&key, &value)?,
            "prefix" => prefix = Some(value),
            "remote-url" => remote_url = Some(value.trim_end_matches('/').to_owned()),
            "scenarios" => {
                let mut list = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "all" {
                        list.extend(Scenario::ALL);
                        continue;
                    }
                    list.push(
                        Scenario::from_name(name)
                            .ok_or_else(|| format!("--scenarios: unknown scenario {name:?}"))?,
                    );
                }
                scenarios = Some(list);
            }
            _ => return Err(format!("unknown flag --{key}")),
        }
    }

    if !url.starts_with("http://") {
        return Err(format!(
            "--url must be an http:// URL (no TLS), got {url:?}"
        ));
    }
    if let Some(remote) = &remote_url {
        if !remote.starts_with("http://") {
            return Err(format!(
                "--remote-url must be an http:// URL (no TLS), got {remote:?}"
            ));
        }
    }
    if users == 0 {
        return Err("--users must be at least 1".into());
    }
    let joiners = joiners.unwrap_or(users);
    if joiners == 0 || joiners > users {
        return Err(format!("--joiners must be between 1 and --users ({users})"));
    }
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if !(1..=86_400).contains(&timeout_secs) {
        return Err("--timeout-secs must be between 1 and 86400".into());
    }
    let prefix = prefix.unwrap_or_else(random_prefix);
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-".contains(c))
    {
        return Err(format!(
            "--prefix must be non-empty and only hold a-z, 0-9, '.', '_', '=' or '-', got {prefix:?}"
        ));
    }
    let explicit = scenarios.is_some();
    let requested = scenarios.unwrap_or_else(|| Scenario::ALL.to_vec());
    // Running order is fixed; duplicates collapse.
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| requested.contains(s))
        .filter(|s| *s != Scenario::IdleSync || idle_clients > 0 || explicit)
        .filter(|s| !s.is_remote() || remote_url.is_some() || explicit)
        .collect();
    if scenarios.is_empty() {
        return Err("--scenarios names no scenario".into());
    }
    if scenarios.contains(&Scenario::IdleSync) && idle_clients == 0 {
        return Err("idle_sync needs --idle-clients N with N > 0".into());
    }
    if let Some(s) = scenarios.iter().find(|s| s.is_remote()) {
        if remote_url.is_none() {
            return Err(format!(
                "{s} needs --remote-url (a second, federating server)"
            ));
        }
    }
    if scenarios.contains(&Scenario::SendToSync) && users < 2 {
        return Err("send_to_sync needs --users 2 or more (a sender and a receiver)".into());
    }

    Ok(Command::Run(Args {
        url,
        server_name,
        users,
        joiners,
        messages,
        concurrency,
        rounds,
        rooms_for_initial_sync,
        idle_clients,
        server_pid,
        scenarios,
        timeout_secs,
        prefix,
        remote_url,
    }))
}

/// Parses the value of `--key` as a number, naming the flag on failure.
fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{key} needs a non-negative whole number, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|s| s.to_string()), || "loadabc123".into())? {
            Command::Run(a) => Ok(a),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let a = run(&[]).unwrap();
        assert_eq!(a.url, "http://127.0.0.1:8008");
        assert_eq!(a.server_name, None);
        assert_eq!((a.users, a.joiners, a.messages), (20, 20, 2000));
        assert_eq!(
            (a.concurrency, a.rounds, a.rooms_for_initial_sync),
            (16, 200, 100)
        );
        assert_eq!(
            (a.idle_clients, a.server_pid, a.timeout_secs),
            (0, None, 60)
        );
        assert_eq!(a.prefix, "loadabc123");
        // idle_sync only runs with --idle-clients, the remote scenarios with --remote-url.
        assert_eq!(a.scenarios, Scenario::ALL[..5].to_vec());
        assert_eq!(a.remote_url, None);
    }

    #[test]
    fn flags_in_both_forms() {
        let a = run(&[
            "--url=http://localhost:18008/",
            "--users",
            "5",
            "--joiners=3",
            "--messages",
            "10",
            "--concurrency",
            "2",
            "--server-pid",
            "42",
            "--idle-clients",
            "7",
            "--prefix",
            "x-1",
            "--server-name",
            "example.org",
        ])
        .unwrap();
        assert_eq!(a.url, "http://localhost:18008");
        assert_eq!(
            (a.users, a.joiners, a.messages, a.concurrency),
            (5, 3, 10, 2)
        );
        assert_eq!((a.server_pid, a.idle_clients), (Some(42), 7));
        assert_eq!(a.prefix, "x-1");
        assert_eq!(a.server_name.as_deref(), Some("example.org"));
        assert_eq!(a.scenarios, Scenario::ALL[..6].to_vec());
    }

    #[test]
    fn remote_scenarios_need_a_remote_server() {
        let a = run(&["--remote-url", "http://127.0.0.1:9009/"]).unwrap();
        assert_eq!(a.remote_url.as_deref(), Some("http://127.0.0.1:9009"));
        assert!(a.scenarios.contains(&Scenario::RemoteJoin));
        assert!(a.scenarios.contains(&Scenario::FromRemoteSync));
        let e = run(&["--scenarios", "to_remote_sync"]).unwrap_err();
        assert!(e.contains("--remote-url"), "{e}");
        let e = run(&["--remote-url", "https://x.example"]).unwrap_err();
        assert!(e.contains("http://"), "{e}");
    }

    #[test]
    fn scenarios_keep_running_order_and_drop_duplicates() {
        let a = run(&["--scenarios", "send,register, send"]).unwrap();
        assert_eq!(a.scenarios, vec![Scenario::Register, Scenario::Send]);
    }

    #[test]
    fn help_wins() {
        let cmd = parse(["--users".into(), "3".into(), "--help".into()], String::new);
        assert_eq!(cmd, Ok(Command::Help));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for (args, needle) in [
            (
                &["--users", "many"][..],
                "--users needs a non-negative whole number",
            ),
            (&["--users", "-1"], "--users needs"),
            (&["--users", "0"], "--users must be at least 1"),
            (
                &["--users", "3", "--joiners", "4"],
                "--joiners must be between 1 and",
            ),
            (&["--concurrency", "0"], "--concurrency"),
            (&["--timeout-secs", "0"], "--timeout-secs must be between"),
            (
                &["--timeout-secs", "18446744073709551615"],
                "--timeout-secs must be between",
            ),
            (&["--url", "https://x"], "http://"),
            (&["--frobnicate", "1"], "unknown flag --frobnicate"),
            (&["--rounds"], "--rounds needs a value"),
            (&["users"], "unexpected argument"),
            (&["--scenarios", "nope"], "unknown scenario \"nope\""),
            (&["--scenarios", ","], "names no scenario"),
            (
                &["--scenarios", "idle_sync"],
                "idle_sync needs --idle-clients",
            ),
            (&["--users", "1"], "send_to_sync needs --users 2"),
            (&["--prefix", "Bad Name"], "--prefix must"),
            (&["--server-pid", "99999999999"], "--server-pid needs"),
        ] {
            let err = run(args).expect_err(needle);
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn one_user_without_send_to_sync_is_fine() {
        let a = run(&["--users", "1", "--scenarios", "register,send"]).unwrap();
        assert_eq!((a.users, a.joiners), (1, 1));
    }
}
