// A local OpenID Connect provider for bridgemesh's single sign-on tests: panva's oidc-provider
// (OpenID Certified), with its development login form, fresh keys per run and two users:
//   alice (alice@example.org): in the group "bridgemesh-hosts"
//   bob   (bob@example.net):   in "staff" only
// The development form takes any password; the users differ only in their claims.
//
// Protocol with the test: the provider listens on 127.0.0.1 (a port the system picks) and
// prints `listening <port>`; the test answers with one line on stdin, the redirect URL of the
// control node under test (known only once that node is up); then it prints `ready <issuer>`.
// ISSUER in the environment overrides the issuer the provider names (default: its own URL).
import http from 'node:http';
import crypto from 'node:crypto';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const ACCOUNTS = {
  alice: {
    email: 'alice@example.org', email_verified: true, name: 'Alice', preferred_username: 'alice',
    groups: ['bridgemesh-hosts', 'staff'],
  },
  bob: {
    email: 'bob@example.net', email_verified: true, name: 'Bob', preferred_username: 'bob',
    groups: ['staff'],
  },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
console.log(`listening ${port}`);

const lines = readline.createInterface({ input: process.stdin });
const redirectUri = await new Promise((resolve) => lines.once('line', (line) => resolve(line.trim())));

const signing = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bridgemesh',
    client_secret: 'bridgemesh-test-client-secret',
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...signing, kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // The claims of the scopes go into the ID token (bridgemesh reads only the ID token).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    const account = ACCOUNTS[sub];
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { sub, ...account }; } };
  },
  // bridgemesh is a first-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});

server.on('request', provider.callback());
console.log(`ready ${issuer}`);
