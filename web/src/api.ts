// The HTTP API: JSON in and out, RFC 9457 problems turned into ApiError with the server's detail, and the
// access token refreshed once (rotating refresh token) when it expires.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  username: string;
}

export interface Image {
  etag: string;
  width: number;
  height: number;
}

export interface Channel {
  id: string;
  name: string;
  owner_id: string;
  owner_username: string;
  title: string;
  description: string;
  category: string;
  tags: string[];
  language: string;
  live: boolean;
  live_since: string | null;
  avatar: Image | null;
  banner: Image | null;
  stream_key_prefix?: string | null;
}

export interface Notification {
  id: number;
  kind: string;
  channel_name: string;
  actor_username: string;
  tier: number;
  created_at: string;
  read: boolean;
}

const KEY = "cpc.tokens";
const listeners = new Set<() => void>();
let refreshing: Promise<boolean> | null = null;

function load(): Tokens | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  } catch {
    return null;
  }
}

export const session = {
  get user(): string | null {
    return load()?.username ?? null;
  },
  get token(): string | null {
    return load()?.access_token ?? null;
  },
  set(tokens: Tokens | null): void {
    if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
    else localStorage.removeItem(KEY);
    listeners.forEach((fn) => fn());
  },
  onChange(fn: () => void): void {
    listeners.add(fn);
  },
};

async function refresh(): Promise<boolean> {
  const tokens = load();
  if (!tokens) return false;
  const r = await fetch("/api/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: tokens.refresh_token }),
  });
  if (!r.ok) {
    session.set(null);
    return false;
  }
  const pair = await r.json();
  session.set({ ...pair, username: tokens.username });
  return true;
}

export async function raw(path: string, init: RequestInit = {}, retry = true): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = session.token;
  if (token && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
  const r = await fetch(path, { ...init, headers });
  if (r.status === 401 && token && retry) {
    refreshing ??= refresh().finally(() => (refreshing = null));
    if (await refreshing) return raw(path, init, false);
  }
  if (!r.ok) {
    let code = "error";
    let detail = `${r.status} ${r.statusText}`;
    try {
      const body = await r.json();
      code = body.code ?? code;
      detail = body.detail ?? detail;
    } catch {
      /* not a problem document */
    }
    throw new ApiError(r.status, code, detail);
  }
  return r;
}

export async function api<T>(path: string, method = "GET", body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const r = await raw(path, init);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export async function signIn(username: string, password: string): Promise<void> {
  const pair = await api<Omit<Tokens, "username">>("/api/v1/auth/login", "POST", { username, password });
  session.set({ ...pair, username });
}

export async function signOut(): Promise<void> {
  const tokens = load();
  session.set(null);
  if (tokens) {
    await fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh_token }),
    }).catch(() => undefined);
  }
}

export const enc = encodeURIComponent;

export function imageUrl(channel: Channel, kind: "avatar" | "banner"): string | null {
  const image = channel[kind];
  return image ? `/api/v1/channels/${enc(channel.name)}/${kind}?v=${enc(image.etag)}` : null;
}
