// Types for index.js: server-side helpers for roomserver apps (Node.js >= 18).

export type Role = "viewer" | "host" | "moderator" | "admin";
export declare const ROLES: readonly Role[];
export declare const SIGNATURE_HEADER: "x-roomserver-signature";
export declare const SIGNATURE_V2_HEADER: "x-roomserver-signature-v2";
export declare const WEBHOOK_TOLERANCE_S: number;

export interface MintOptions {
  /** Limit the token to one room. */
  room?: string;
  /** Lifetime in seconds (default 3600; the server refuses more than a year). */
  ttlS?: number;
  /** Display name, at most 32 characters (default: the user id's first 32). */
  name?: string;
  tier?: number;
  tags?: string[];
  /** Unix seconds to mint at (default: now). */
  now?: number;
}
/** An HS256 JWT the server accepts (PROTOCOL §1). Mint on your back end only. */
export declare function mintToken(app: string, secret: string, user: string, role?: Role, options?: MintOptions): string;

export declare class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly retryAfterMs: number | null;
  constructor(status: number, code: string, message?: string, retryAfterMs?: number | null);
}

export interface AdminClientOptions {
  /** http(s)://host[:port][/prefix] of the server. */
  url: string;
  app: string;
  secret: string;
  /** The admin's user id in the server's logs and events (default "backend"). */
  user?: string;
  tokenTtlS?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export type Json = Record<string, any>;

export declare class AdminClient {
  constructor(options: AdminClientOptions);
  readonly url: string;
  readonly app: string;
  readonly user: string;
  token(): string;
  request<T = Json>(method: string, path: string, init?: { body?: unknown; query?: Record<string, string | number | null | undefined> }): Promise<T>;
  /** Run a host/moderator op; `as` acts as that user instead of the admin. Pass `cid` in params for safe retries. */
  op<T = Json>(room: string, op: string, params?: Json, options?: { as?: string }): Promise<T>;
  createRoom(room?: { id?: string; title?: string; mode?: "live" | "call"; barrageCap?: number; scheduledAt?: number }): Promise<{ room: Json }>;
  listRooms(page?: { after?: string; limit?: number }): Promise<{ rooms: Json[]; next: string | null }>;
  getRoom(room: string): Promise<{ room: Json }>;
  endRoom(room: string): Promise<{ room: Json }>;
  history(room: string, page?: { since?: number; limit?: number }): Promise<{ epoch: string; seq: number; events: Json[] }>;
  schedule(page?: { after?: string; limit?: number }): Promise<{ shows: Json[]; next: string | null }>;
  reschedule(room: string, scheduledAt: number | null): Promise<{ room: Json }>;
  followers(room: string, page?: { after?: string; limit?: number }): Promise<{ followers: string[]; count: number; next: string | null }>;
  publishEvent(room: string, ev: string, data?: Json): Promise<{ seq: number }>;
  lotteryRecord(room: string, lottery: string): Promise<Json>;
  saleOrders(room: string, sale: string): Promise<Json>;
}

export declare class WebhookRejected extends Error {
  constructor(message: string);
}

/** A webhook's payload. */
export interface WebhookPayload {
  id: string;
  event: string;
  app: string;
  room: string;
  ts: number;
  data: Json;
}

export type Body = Buffer | Uint8Array | string;
export type HeaderBag = Record<string, string | string[] | undefined> | { get(name: string): string | null };

export declare function signWebhook(secret: string, body: Body, t?: number): Record<"x-roomserver-signature" | "x-roomserver-signature-v2", string>;
export declare function checkSignatureV1(secret: string, body: Body, header: string): void;
export declare function checkSignatureV2(secret: string, body: Body, header: string, options?: { toleranceS?: number; now?: number }): void;
/** Throws WebhookRejected unless the delivery is signed with `secret` within the tolerance. */
export declare function verifyWebhook(
  secret: string,
  body: Body,
  headers: HeaderBag,
  options?: { toleranceS?: number; allowV1?: boolean; now?: number },
): WebhookPayload;
