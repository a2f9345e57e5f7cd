//! Certificates by ACME (RFC 8555) with instant-acme, validated by http-01 on port 80: the
//! account is kept in the state directory, the certificate and key too, and a thin task renews
//! when [`Renewal`] says so, swapping the new certificate into the listener's slot.

use crate::public::certificate::{CertificateSlot, LoadedCertificate};
use crate::public::redirect::Http01Challenges;
use crate::public::renewal::{Decision, Renewal, RenewalPolicy};
use crate::public::state_dir::{StateDir, write_private};
use anyhow::Context as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Longest wait for the ACME server to validate and issue, per order.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub directory_url: String,
    /// A PEM root to trust for the ACME server's own HTTPS (a private or test ACME server);
    /// the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// `mailto:` contact for the account (expiry notices).
    pub contact_email: Option<String>,
    pub renewal: RenewalPolicy,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            directory_url: LETS_ENCRYPT_DIRECTORY.to_owned(),
            ca_file: None,
            contact_email: None,
            renewal: RenewalPolicy::default(),
        }
    }
}

/// The stored account, with the directory it belongs to (a changed `--acme-directory` makes a
/// new account rather than presenting this one to the wrong server).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

pub struct AcmeClient {
    config: AcmeConfig,
    domain: String,
    state: StateDir,
    challenges: Http01Challenges,
    account: Option<Account>,
}

/// What one order took.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    pub elapsed: Duration,
}

impl AcmeClient {
    pub fn new(config: AcmeConfig, domain: String, state: StateDir, challenges: Http01Challenges) -> Self {
        Self {
            config,
            domain,
            state,
            challenges,
            account: None,
        }
    }

    fn builder(&self) -> anyhow::Result<instant_acme::AccountBuilder> {
        Ok(match &self.config.ca_file {
            Some(path) => Account::builder_with_root(path)
                .with_context(|| format!("cannot use {} as the ACME server's CA", path.display()))?,
            None => Account::builder().context("cannot set up the ACME client")?,
        })
    }

    async fn account(&mut self) -> anyhow::Result<Account> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let path = self.state.account_path();
        if let Some(bytes) = self.state.read(&path)? {
            match serde_json::from_slice::<StoredAccount>(&bytes) {
                Ok(stored) if stored.directory_url == self.config.directory_url => {
                    let account = self
                        .builder()?
                        .from_credentials(stored.credentials)
                        .await
                        .context("cannot restore the ACME account")?;
                    self.account = Some(account.clone());
                    return Ok(account);
                }
                Ok(_) => tracing::info!("the stored ACME account is for another directory; creating one"),
                Err(err) => tracing::warn!(%err, "the stored ACME account is unreadable; creating one"),
            }
        }
        let contact = self
            .config
            .contact_email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = self
            .builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory_url.clone(),
                None,
            )
            .await
            .with_context(|| format!("cannot create an ACME account at {}", self.config.directory_url))?;
        let stored = StoredAccount {
            directory_url: self.config.directory_url.clone(),
            credentials,
        };
        write_private(&path, &serde_json::to_vec(&stored)?)?;
        self.account = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for the domain, stores it, and returns it loaded.
    pub async fn order(&mut self) -> anyhow::Result<(LoadedCertificate, Issued)> {
        let started = Instant::now();
        let result = tokio::time::timeout(ORDER_TIMEOUT, self.order_inner())
            .await
            .unwrap_or_else(|_| {
                Err(anyhow::anyhow!(
                    "the ACME order took longer than {ORDER_TIMEOUT:?}"
                ))
            });
        match result {
            Ok(certificate) => Ok((
                certificate,
                Issued {
                    elapsed: started.elapsed(),
                },
            )),
            Err(err) => {
                // The account may be what failed (a test server restarted, an account revoked):
                // the next attempt starts from the stored credentials or a new account.
                self.account = None;
                Err(err)
            }
        }
    }

    async fn order_inner(&mut self) -> anyhow::Result<LoadedCertificate> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(self.domain.clone())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .context("the ACME server refused the order")?;
        let mut published = Vec::new();
        let outcome = async {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = authorization.context("cannot read an ACME authorization")?;
                match authorization.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => anyhow::bail!("ACME authorization is {other:?}"),
                }
                let mut challenge = authorization
                    .challenge(ChallengeType::Http01)
                    .context("the ACME server offers no http-01 challenge")?;
                let token = challenge.token.clone();
                if !self
                    .challenges
                    .publish(&token, challenge.key_authorization().as_str())
                {
                    anyhow::bail!("too many ACME challenges in progress");
                }
                published.push(token);
                challenge
                    .set_ready()
                    .await
                    .context("cannot start ACME validation")?;
            }
            let retries = RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .timeout(ORDER_TIMEOUT);
            let status = order.poll_ready(&retries).await.context("ACME validation")?;
            if status != OrderStatus::Ready {
                anyhow::bail!(
                    "ACME validation ended {status:?}: is {} reachable on TCP 80 from the internet?",
                    self.domain
                );
            }
            let key_pem = order.finalize().await.context("cannot finalize the ACME order")?;
            let chain_pem = order
                .poll_certificate(&retries)
                .await
                .context("cannot download the certificate")?;
            Ok((chain_pem, key_pem))
        }
        .await;
        for token in &published {
            self.challenges.withdraw(token);
        }
        let (chain_pem, key_pem) = outcome?;
        let loaded =
            LoadedCertificate::from_pem(chain_pem.as_bytes(), key_pem.as_bytes(), Some(&self.domain))
                .context("the ACME server issued an unusable certificate")?;
        write_private(&self.state.key_path(), key_pem.as_bytes())?;
        write_private(&self.state.cert_path(), chain_pem.as_bytes())?;
        write_private(
            &self.state.cert_directory_path(),
            self.config.directory_url.as_bytes(),
        )?;
        Ok(loaded)
    }
}

/// The certificate stored by an earlier run, if it is for `domain`, from `directory_url` (a
/// certificate from a staging directory is not kept once production is configured) and not
/// expired.
pub fn stored_certificate(state: &StateDir, domain: &str, directory_url: &str) -> Option<LoadedCertificate> {
    let issued_by = state.read(&state.cert_directory_path()).ok()??;
    if issued_by != directory_url.as_bytes() {
        tracing::info!("the stored certificate is from another ACME directory; ordering another");
        return None;
    }
    let chain = state.read(&state.cert_path()).ok()??;
    let key = state.read(&state.key_path()).ok()??;
    match LoadedCertificate::from_pem(&chain, &key, Some(domain)) {
        Ok(loaded) if loaded.validity.not_after > SystemTime::now() => Some(loaded),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(%err, "the stored certificate is unusable; ordering another");
            None
        }
    }
}

/// Renews the certificate in `slot` whenever [`Renewal`] says it is due, until `stopped`
/// changes. Every certificate swapped in is also sent on `issued`.
pub async fn run_renewal(
    mut client: AcmeClient,
    slot: Arc<CertificateSlot>,
    issued: watch::Sender<Option<LoadedCertificate>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut renewal = Renewal::new(client.config.renewal, slot.current().map(|c| c.validity));
    loop {
        match renewal.decide(SystemTime::now()) {
            Decision::WaitUntil(at) => {
                let wait = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
                // Re-decided at least hourly: a suspended machine's clock jumps.
                let wait = wait.min(Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stopped.changed() => return,
                }
            }
            Decision::Order => {
                let ordered = tokio::select! {
                    ordered = client.order() => ordered,
                    _ = stopped.changed() => return,
                };
                match ordered {
                    Ok((certificate, took)) => {
                        tracing::info!(
                            serial = %certificate.serial_hex,
                            took_ms = took.elapsed.as_millis() as u64,
                            "certificate renewed"
                        );
                        renewal.succeeded(certificate.validity, SystemTime::now());
                        slot.replace(certificate.clone());
                        let _ = issued.send(Some(certificate));
                    }
                    Err(err) => {
                        let retry_at = renewal.failed(SystemTime::now());
                        let retry_in = retry_at.duration_since(SystemTime::now()).unwrap_or_default();
                        tracing::warn!(
                            err = %format!("{err:#}"),
                            retry_in_s = retry_in.as_secs(),
                            failures = renewal.failures(),
                            "certificate renewal failed"
                        );
                    }
                }
            }
        }
    }
}
