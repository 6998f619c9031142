use crate::rate_limit::Policy;

/// Settings of sign-in, sessions and rate limits; every flag has an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct AccountsArgs {
    /// How long a browser session lasts after sign-in, in hours.
    #[arg(long, env = "SESSION_TTL_HOURS", default_value_t = 24 * 7)]
    pub session_ttl_hours: u32,
    /// `true`: the session cookie is always `Secure` (`__Host-cp_session`); `false`: never,
    /// for plain HTTP on a trusted network. When absent: `Secure` unless the page was asked for
    /// on loopback over plain HTTP (`X-Forwarded-Proto: https` always makes it `Secure`).
    #[arg(long, env = "SECURE_COOKIES", value_name = "true|false")]
    pub secure_cookies: Option<bool>,
    /// Submissions one account may make per window (each item of a batch counts).
    #[arg(long, env = "SUBMISSION_RATE_LIMIT", default_value_t = 10_000)]
    pub submission_rate_limit: u32,
    /// The submission limit's window, in seconds (3600: per hour).
    #[arg(long, env = "SUBMISSION_RATE_WINDOW_SECS", default_value_t = 3_600)]
    pub submission_rate_window_secs: u32,
    /// Sign-in attempts per account per window, counted per password it has had (a reset
    /// starts a new count).
    #[arg(long, env = "SIGN_IN_LIMIT_PER_ACCOUNT", default_value_t = 10)]
    pub sign_in_limit_per_account: u32,
    /// Sign-in attempts per client address per window.
    #[arg(long, env = "SIGN_IN_LIMIT_PER_ADDRESS", default_value_t = 100)]
    pub sign_in_limit_per_address: u32,
    /// The sign-in limits' window, in seconds.
    #[arg(long, env = "SIGN_IN_WINDOW_SECS", default_value_t = 900)]
    pub sign_in_window_secs: u32,
    /// Sign-ups per client address per hour.
    #[arg(long, env = "SIGN_UP_LIMIT_PER_ADDRESS", default_value_t = 30)]
    pub sign_up_limit_per_address: u32,
    /// The proxies (CIDRs, comma-separated, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` is
    /// believed: behind them a client's address is the right-most hop that is not one of them.
    /// None by default: the address is the peer's, whatever the header says.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AccountsArgs {
    pub fn submission_policy(&self) -> Policy {
        Policy { name: "submissions", limit: self.submission_rate_limit, window_secs: self.submission_rate_window_secs }
    }

    pub fn sign_in_per_account(&self) -> Policy {
        Policy { name: "sign-in-account", limit: self.sign_in_limit_per_account, window_secs: self.sign_in_window_secs }
    }

    pub fn sign_in_per_address(&self) -> Policy {
        Policy { name: "sign-in-address", limit: self.sign_in_limit_per_address, window_secs: self.sign_in_window_secs }
    }

    pub fn sign_up_per_address(&self) -> Policy {
        Policy { name: "sign-up-address", limit: self.sign_up_limit_per_address, window_secs: 3_600 }
    }
}

impl Default for AccountsArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: AccountsArgs,
        }
        service_kit::default_config::<Defaults>().args
    }
}
