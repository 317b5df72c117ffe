// Local OpenID Connect issuer for end-to-end tests (oidc-provider 9.x).
//
// Usage: node tests/oidc/provider.mjs [port]  (started by tests/oidc/issuer.py)
// Env:
//   OIDC_PORT            port (if no argv[2]); default 9400
//   OIDC_HOST            bind host; default 127.0.0.1 (issuer is http://<host>:<port>)
//   OIDC_CLIENT_ID       default "pipelinehub"
//   OIDC_CLIENT_SECRET   default "pipelinehub-secret"
//   OIDC_REDIRECT_URIS   comma list of exact redirect URIs (required)
//   OIDC_TOKEN_AUTH_METHOD  client_secret_post (default; what allauth picks) or client_secret_basic
//   OIDC_USERS_FILE      JSON file, re-read at every findAccount call:
//     {"alice": {"email": "...", "name": "...", "preferred_username": "...",
//                "groups": ["a", "b"], "groups_in_id_token_only": false}, ...}
//     The key is the login typed in the devInteractions form and becomes `sub`.
//     Optional "password": if present it must match; otherwise any password is accepted.
// Prints "READY <issuer>" on stdout once listening.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || process.env.OIDC_PORT || 9400);
const host = process.env.OIDC_HOST || '127.0.0.1';
const issuer = `http://${host}:${port}`;
const usersFile = process.env.OIDC_USERS_FILE;
if (!usersFile) { console.error('OIDC_USERS_FILE is required'); process.exit(2); }
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '').split(',').map((s) => s.trim()).filter(Boolean);
if (!redirectUris.length) { console.error('OIDC_REDIRECT_URIS is required'); process.exit(2); }

function loadUsers() {
  return JSON.parse(readFileSync(usersFile, 'utf8'));  // re-read each time on purpose
}

async function findAccount(ctx, sub) {
  const user = loadUsers()[sub];
  if (!user) return undefined;  // unknown login -> flow fails at consent/token time
  return {
    accountId: sub,
    // use: "id_token" | "userinfo"; the provider filters by granted scopes/claims afterwards
    async claims(use /* , scope, claims, rejected */) {
      const out = {
        sub,
        email: user.email,
        email_verified: user.email_verified ?? true,
        name: user.name,
        preferred_username: user.preferred_username ?? sub,
      };
      const groups = user.groups ?? [];
      if (use === 'id_token' || !user.groups_in_id_token_only) out.groups = groups;
      return out;
    },
  };
}

const configuration = {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID || 'pipelinehub',
    client_secret: process.env.OIDC_CLIENT_SECRET || 'pipelinehub-secret',
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: process.env.OIDC_TOKEN_AUTH_METHOD || 'client_secret_post',
  }],
  pkce: { required: () => true },          // S256 only in v9
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,             // scope claims (groups) also go into the ID token
  findAccount,
  features: { devInteractions: { enabled: true } },
  // cookies.keys: fixed so restarts don't matter inside one test run
  cookies: { keys: ['pipelinehub-test-cookie-key'] },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description || ''));

// Gate the devInteractions login form: unknown login, or wrong password when the user entry
// has a "password", ends the authorization with error=access_denied at the redirect_uri
// (instead of a 500 later, since devInteractions accepts any login).
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)
      && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
    ctx.request.body = body;  // oidc-provider falls back to this (warns once)
    if (body.prompt === 'login') {
      const user = loadUsers()[body.login];
      if (!user || (user.password !== undefined && user.password !== body.password)) {
        await provider.interactionFinished(ctx.req, ctx.res, {
          error: 'access_denied', error_description: 'unknown user or wrong password',
        }, { mergeWithLastSubmission: false });
        return;
      }
    }
  }
  await next();
});

const server = provider.listen(port, host, () => {
  console.log(`READY ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
