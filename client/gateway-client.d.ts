/** Options of createClient. */
export interface ClientOptions {
  /** The gateway's origin and path prefix, e.g. "https://app.example"; "" (the default) is the page's own origin. */
  baseURL?: string;
  /**
   * How the access token travels. "cookie" (the default): the gateway's
   * HttpOnly cookie, with X-Requested-With on every request. "bearer": an
   * Authorization header, the token kept in memory only.
   */
  delivery?: 'cookie' | 'bearer';
  /**
   * Refresh before a request when the token has fewer than this many
   * seconds left: set it to the gateway's tokens.refresh_before_expiry.
   * 0 (the default): refresh only after a 401 "token expired".
   */
  refreshEarlySeconds?: number;
  /** Called with the reason when the session has ended, like the "sessionended" event. */
  onSessionEnded?: (reason: SessionEndedReason) => void;
  /** The fetch to use; globalThis.fetch by default (for tests). */
  fetch?: typeof globalThis.fetch;
  /** The Web Locks manager; navigator.locks by default, null to refresh without a cross-tab lock. */
  locks?: Pick<LockManager, 'request'> | null;
  /** The channel to share refreshes with other tabs; a BroadcastChannel("gateway-session") by default, null for none. */
  channel?: Pick<BroadcastChannel, 'postMessage' | 'onmessage'> | null;
  /** The clock, in milliseconds; Date.now by default (for tests). */
  now?: () => number;
  /**
   * Sign a DPoP proof (RFC 9449) for every request, so that a login binds
   * the session to this browser's key. Default: true where WebCrypto and
   * IndexedDB exist, false elsewhere. false: no proofs, bearer sessions.
   */
  dpop?: boolean;
  /**
   * Where the DPoP key pair is kept: globalThis.indexedDB by default
   * (database "spa-gateway-client", store "dpop-keys"); null or absent: a
   * key in memory, for this page's life only.
   */
  indexedDB?: IDBFactory | null;
  /**
   * The algorithm of a new DPoP key: "EdDSA" (the default; Ed25519, where
   * WebCrypto has it, else ES256) or "ES256" (P-256). A key already stored
   * keeps its algorithm. Set "ES256" for a gateway whose
   * tokens.dpop_algorithms leaves EdDSA out.
   */
  dpopAlgorithm?: 'EdDSA' | 'ES256';
  /**
   * The fetch credentials mode of every request to the gateway (login,
   * refresh, logout, sessions, and fetch without its own):
   * "same-origin" (the default) for a gateway on the page's origin;
   * "include" for one on another origin (listed in its
   * tokens.allowed_origins), so that its cookie travels with cookie
   * delivery. A Strict cookie still travels only within one site.
   */
  credentials?: RequestCredentials;
}

/**
 * Why a session ended: "logout", or the gateway's refusal: "session expired"
 * (idle or absolute timeout), "session revoked", "token reuse detected", or
 * another error_description of a refused refresh.
 */
export type SessionEndedReason =
  | 'logout'
  | 'session expired'
  | 'session revoked'
  | 'token reuse detected'
  | (string & {});

/** The event dispatched as "sessionended". */
export interface SessionEndedEvent extends Event {
  readonly type: 'sessionended';
  readonly reason: SessionEndedReason;
  /**
   * After logout() of a session of an OpenID Provider ([login.oidc]): the
   * provider's end-session URL, for the app to follow
   * (location.assign(ev.endSessionURL)) so that the provider's own session
   * ends too. Absent otherwise, and in other tabs.
   */
  readonly endSessionURL?: string;
  readonly detail: { reason: SessionEndedReason; endSessionURL?: string };
}

/** The event dispatched as "refreshed" when a new token came: from this tab's refresh, or another tab's (byOtherTab). */
export interface RefreshedEvent extends Event {
  readonly type: 'refreshed';
  readonly byOtherTab: boolean;
  readonly detail: { byOtherTab: boolean };
}

/**
 * The event dispatched as "loggedin" after a login: this tab's, or, in cookie
 * delivery, another tab's (byOtherTab), whose cookie this tab now shares.
 */
export interface LoggedInEvent extends Event {
  readonly type: 'loggedin';
  readonly byOtherTab: boolean;
  readonly detail: { byOtherTab: boolean };
}

/** A login the gateway refused; status is its HTTP status (401, 429, ...). */
export interface LoginError extends Error {
  status: number;
}

/** A client of one gateway. */
export interface GatewayClient {
  /** Logs in; rejects with a LoginError when refused. */
  login(username: string, password: string): Promise<void>;
  /**
   * Ends the session at the gateway and dispatches "sessionended" with
   * reason "logout" (and, for a session of an OpenID Provider, its
   * endSessionURL); resolves true when the gateway ended it (204, or 200
   * with the provider's end-session URL). scope "others" ends every other
   * session of the user and keeps this one (no event); "all" ends every one.
   */
  logout(options?: { scope?: 'others' | 'all' }): Promise<boolean>;
  /**
   * fetch with the session's token; a 401 "token expired" is refreshed once
   * and the request retried once. A string input is relative to baseURL.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Seconds until the session can no longer be refreshed (from refresh_expires_in); null before any login or refresh. */
  timeLeft(): number | null;
  /** The delivery in use. */
  readonly delivery: 'cookie' | 'bearer';
  /** Whether the last token answer was token_type "DPoP" (a session bound to this client's key); null before any. */
  readonly bound: boolean | null;
  /** Whether DPoP proofs are sent. */
  readonly dpop: boolean;
  /** The RFC 7638 thumbprint of the DPoP key (a bound token's cnf.jkt), creating the key if there is none; null without DPoP. */
  thumbprint(): Promise<string | null>;
  addEventListener(type: 'sessionended', listener: (ev: SessionEndedEvent) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'refreshed', listener: (ev: RefreshedEvent) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: 'loggedin', listener: (ev: LoggedInEvent) => void, options?: boolean | AddEventListenerOptions): void;
  removeEventListener(type: 'sessionended' | 'refreshed' | 'loggedin', listener: (ev: any) => void, options?: boolean | EventListenerOptions): void;
  /** Closes the BroadcastChannel the client opened. */
  close(): void;
}

/** createClient returns a client of the gateway at options.baseURL. */
export function createClient(options?: ClientOptions): GatewayClient;

/** parseChallenge reads error and error_description from a WWW-Authenticate header; "" when absent. */
export function parseChallenge(header: string | null): { error: string; description: string };
