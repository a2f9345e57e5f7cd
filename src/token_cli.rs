//! `bridgemesh token`: a join token in Jitsi's format, signed with a shared secret or a key.

/// `bridgemesh token`: exactly one of --secret, --secret-file, --private-key signs the token.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("signing_key").required(true).args(["secret", "secret_file", "private_key"])))]
pub(crate) struct TokenArgs {
    /// HS256 shared secret (Jitsi's app_secret). Prefer --secret-file or the environment
    /// variable: a command-line argument is visible to other users of the machine.
    #[arg(long, env = "BRIDGEMESH_TOKEN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// File holding the HS256 secret (one trailing newline is ignored).
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, or PKCS#1 for RSA) to sign with; needs --alg and --kid.
    #[arg(long, requires_all = ["alg", "kid"])]
    private_key: Option<std::path::PathBuf>,
    /// Algorithm of --private-key.
    #[arg(long, value_enum, requires = "private_key")]
    alg: Option<TokenAlg>,
    /// Key id for the token header: selects the verifying key (required with --private-key).
    #[arg(long)]
    kid: Option<String>,
    /// Issuer: the app id the control node accepts.
    #[arg(long)]
    iss: String,
    #[arg(long, default_value = "jitsi")]
    aud: String,
    /// Jitsi's tenant or domain; `*` for none.
    #[arg(long, default_value = "*")]
    sub: String,
    /// The room the token admits to, or `*` for every room.
    #[arg(long)]
    room: String,
    /// Display name (context.user.name).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    avatar: Option<String>,
    /// Make the holder a moderator.
    #[arg(long)]
    moderator: bool,
    /// Lifetime: seconds, or a number with s, m, h or d (`90`, `15m`, `1h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_ttl_s)]
    ttl: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum TokenAlg {
    Rs256,
    Eddsa,
}

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use bridgemesh_control::auth::{MintKey, MintRequest, Secret, TokenUser, mint};
    let key = if let Some(secret) = args.secret {
        MintKey::Hs256(Secret::new(secret))
    } else if let Some(path) = args.secret_file {
        let secret = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the secret file {}", path.display()))?;
        let secret = secret.strip_suffix('\n').unwrap_or(&secret);
        MintKey::Hs256(Secret::new(secret.strip_suffix('\r').unwrap_or(secret)))
    } else {
        let path = args.private_key.expect("clap requires one signing key");
        let pem = Secret::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the private key {}", path.display()))?,
        );
        match args.alg.expect("clap requires --alg with --private-key") {
            TokenAlg::Rs256 => MintKey::Rs256 { private_key_pem: pem },
            TokenAlg::Eddsa => MintKey::EdDsa { private_key_pem: pem },
        }
    };
    let now_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let request = MintRequest {
        key,
        kid: args.kid,
        iss: args.iss,
        aud: args.aud,
        sub: args.sub,
        room: args.room,
        user: TokenUser {
            id: args.user_id,
            name: args.name,
            email: args.email,
            avatar: args.avatar,
        },
        moderator: args.moderator,
        nbf_unix_s: None,
        ttl_s: args.ttl,
    };
    Ok(mint(&request, now_unix_s)?)
}

/// `90`, `90s`, `15m`, `1h`, `7d` → seconds.
pub(crate) fn parse_ttl_s(text: &str) -> Result<u64, String> {
    let (digits, unit_s) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        Some((at, 'd')) => (&text[..at], 86_400),
        _ => (text, 1),
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90, 15m, 1h or 7d"))?;
    match count.checked_mul(unit_s) {
        Some(0) => Err("the lifetime must be more than 0 seconds".to_owned()),
        Some(seconds) => Ok(seconds),
        None => Err(format!("{text:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl_s;

    #[test]
    pub(crate) fn ttl_accepts_seconds_and_units_and_refuses_the_rest() {
        assert_eq!(parse_ttl_s("90"), Ok(90));
        assert_eq!(parse_ttl_s("90s"), Ok(90));
        assert_eq!(parse_ttl_s("15m"), Ok(900));
        assert_eq!(parse_ttl_s("1h"), Ok(3600));
        assert_eq!(parse_ttl_s("7d"), Ok(604_800));
        for bad in [
            "",
            "0",
            "0h",
            "h",
            "1.5h",
            "-1",
            "3w",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl_s(bad).is_err(), "{bad:?}");
        }
    }
}
