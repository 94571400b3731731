// Types for roomserver.js (wire protocol v1, PROTOCOL.md). Hand-written, kept next to the module;
// the ops' params and replies and the events' data are generated (roomserver.gen.d.ts).

import type { EventData, LotteryAudit, OpParams, OpReplies } from "./roomserver.gen";

export type { EventData, LotteryAudit, OpParams, OpReplies } from "./roomserver.gen";

export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "not_joined"
  | "rate_limited"
  | "muted"
  | "blocked_content"
  | "sold_out"
  | "limit_reached"
  | "not_open"
  | "conflict"
  | "history_gone"
  | "too_large"
  | "unavailable"
  | "internal";

export declare const ERROR_MESSAGES: Readonly<Record<ErrorCode, string>>;

export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  ABNORMAL: 1006;
  TOO_LARGE: 1009;
  TOKEN_EXPIRED: 4001;
  KICKED: 4003;
  SLOW_CONSUMER: 4008;
  TOO_MANY_CONNECTIONS: 4029;
}>;

export declare function closeMessage(code: number): string;
export declare function newCid(): string;
/** The claims of a roomserver JWT (PROTOCOL §1), read without verifying the signature. */
export interface TokenClaims {
  iss?: string;
  sub?: string;
  name?: string;
  role?: "viewer" | "host" | "moderator" | "admin";
  room?: string;
  tier?: number;
  tags?: string[];
  exp?: number;
  [claim: string]: unknown;
}
export declare function tokenClaims(token: string): TokenClaims;
/** The `rel="ice-server"` links of a `Link` header value (RFC 9725 §4.6) as RTCIceServers. */
export declare function parseIceServerLinks(header: string): RTCIceServer[];

export declare class RoomError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | null;
  readonly op: string | null;
  readonly room: string | null;
  /** HTTP status, for errors of HTTP/WHIP/WHEP requests. */
  readonly status: number | null;
  /**
   * The `cid` the failed op was sent with, if any. After `unavailable` (which
   * includes a timeout or a lost connection) the op may have been done: retry with this cid
   * and the server answers with the first reply instead of doing it twice.
   */
  readonly cid: string | null;
  /** A sentence to show an end user. */
  readonly userMessage: string;
  constructor(
    code: ErrorCode,
    message?: string,
    extra?: { retryAfterMs?: number; op?: string; room?: string; status?: number; cid?: string },
  );
}

// ---- wire shapes -------------------------------------------------------------------------

export interface UserRef {
  id: string;
  name: string;
  tier: number;
}
export interface Product {
  id: string;
  title: string;
  price_cents: number;
  image?: string | null;
}
export interface Gift {
  id: string;
  name: string;
  value: number;
}
export type PublisherRole = "host" | "cohost" | "pk" | "call";
export interface PublisherEntry {
  user: string;
  role: PublisherRole;
  tracks?: unknown;
}
export type RoomSnapshot = OpReplies["room.join"];

/** Server events (PROTOCOL §3) by name → their `data` (generated). Unknown names are typed `any`. */
export type ServerEvents = EventData;

/** Events the client itself emits. */
export interface LocalEvents {
  state: { state: ClientState };
  reconnecting: { attempt: number; delayMs: number; code: number };
  reconnected: { rooms: string[] };
  disconnected: { code: number; reason: string; message: string };
  /** History could not cover a gap: rebuild the room's view from `snapshot`. */
  resync: { room: string; snapshot: RoomSnapshot };
  gap: { room: string; from: number; to: number };
  error: { room?: string; error: RoomError };
}

export interface EventMeta {
  ev: string;
  room: string | null;
  /** Durable events only. */
  seq: number | null;
  ts: number;
  local?: boolean;
}

type AllEvents = ServerEvents & LocalEvents;
export type Listener<D> = (data: D, meta: EventMeta) => void;
/**
 * "connecting" lasts, on a reconnect, until every joined room is resumed or joined again:
 * requests wait for "open" (an op sent earlier would be answered `not_joined`).
 */
export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface RoomClientOptions {
  /** http(s)://host[/prefix] or ws(s)://host[/prefix]/v1/ws; default: the page's origin. */
  url?: string;
  token?: string;
  /** Called for a fresh token on 4001 / HTTP 401. */
  tokenProvider?: () => Promise<string>;
  requestTimeoutMs?: number;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  maxReconnectAttempts?: number;
  tooManyConnectionsDelayMs?: number;
  gapTimeoutMs?: number;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface MediaOptions {
  /** Without `iceServers`, the TURN servers the WHIP/WHEP endpoint announces (OPTIONS) are used. */
  rtcConfig?: RTCConfiguration;
  /** `publish` only: also send a low quality layer (a clone of the video track, by default at
   * half the resolution and 150 kbit/s) that viewers on slow links get (issue 14). */
  layers?: boolean | { scaleResolutionDownBy?: number; maxBitrate?: number };
}

export declare class Publication {
  readonly pc: RTCPeerConnection;
  readonly stream: MediaStream;
  readonly location: string;
  /** The low layer's track (a clone of the camera's) when published with `layers`. */
  lowTrack: MediaStreamTrack | null;
  /** `callback` once when the session ends from the other side (the server closed its DTLS
   * transport: a draining node, a kick, the room's end; or the connection failed). */
  onEnded(callback: (why: string) => void): void;
  stop(): Promise<void>;
}
export declare class Playback extends Publication {
  readonly publisher: string | null;
}

export interface FollowOptions {
  /** Start muted (default true: browsers block unmuted autoplay without a gesture). */
  muted?: boolean;
  /** User ids not to play (e.g. yourself in a call room). */
  exclude?: string[];
  maxRetries?: number;
  makeTile?: (entry: PublisherEntry) => HTMLElement;
  onChange?: (entries: PublisherEntry[]) => void;
  onError?: (entry: PublisherEntry, err: unknown) => void;
}

export declare class PublisherVideos {
  readonly room: string;
  readonly container: HTMLElement;
  update(publishers: PublisherEntry[]): void;
  setMuted(muted: boolean): void;
  videos(): HTMLVideoElement[];
  stop(): void;
}

export interface LotteryParams {
  prize: string;
  winners: number;
  duration_ms: number;
  keyword?: string;
  min_watch_s?: number;
  min_tier?: number;
}
export interface SaleParams {
  product: Product;
  price_cents: number;
  stock: number;
  limit_per_user: number;
  starts_at?: number;
  duration_ms?: number;
}
export interface CouponParams {
  title: string;
  discount_cents: number;
  min_spend_cents: number;
  quantity: number;
  per_user: number;
}
export interface RedPacketParams {
  total_cents: number;
  count: number;
  message?: string;
}
export interface PollParams {
  question: string;
  options: string[];
  duration_ms: number;
}
export type TrackAction = "product.click" | "cart.add" | "share" | "favorite" | "follow" | "unfollow";

export declare class RoomClient {
  constructor(options?: RoomClientOptions);
  readonly state: ClientState;
  readonly httpUrl: string;
  readonly wsUrl: string;
  /** `sub` of the current token. */
  readonly user: string | null;
  token: string | null;

  connect(): Promise<void>;
  close(): void;
  setToken(token: string): void;

  on<K extends keyof AllEvents>(ev: K, fn: Listener<AllEvents[K]>): () => void;
  on(ev: string, fn: Listener<any>): () => void;
  once<K extends keyof AllEvents>(ev: K, fn: Listener<AllEvents[K]>): () => void;
  once(ev: string, fn: Listener<any>): () => void;
  off(ev: string, fn: Listener<any>): void;

  /** Sends `params` as given: the op methods (sendBarrage, buy, …) add a `cid`, this does not. */
  request<K extends keyof OpParams>(
    op: K,
    room: string | null,
    params?: OpParams[K],
    opts?: { timeoutMs?: number },
  ): Promise<OpReplies[K]>;
  /** An op this version's types do not know (a known op's params must match OpParams). */
  request<T = any, O extends string = string>(
    op: O extends keyof OpParams ? never : O,
    room: string | null,
    params?: object,
    opts?: { timeoutMs?: number },
  ): Promise<T>;
  send(op: string, room: string | null, params?: object): boolean;

  /** `ref`: a share link's token (`shareLink`); an invalid one fails the join (`bad_request`). */
  join(room: string, opts?: { ref?: string }): Promise<RoomSnapshot>;
  leave(room: string): Promise<OpReplies["room.leave"]>;
  resume(room: string, since: number, epoch: string): Promise<OpReplies["room.resume"]>;
  lastSeq(room: string): number | null;
  snapshot(room: string): RoomSnapshot | null;
  publishers(room: string): PublisherEntry[];

  ping(): Promise<OpReplies["ping"]>;
  start(room: string, title?: string): Promise<OpReplies["room.start"]>;
  end(room: string): Promise<OpReplies["room.end"]>;
  sendBarrage(room: string, text: string, opts?: { cid?: string }): Promise<OpReplies["barrage.send"]>;
  sendLike(room: string, count?: number): Promise<OpReplies["like.send"]>;
  sendGift(room: string, gift: string, count?: number, opts?: { cid?: string }): Promise<OpReplies["gift.send"]>;
  /** A whole product, or `{id}` of one in the app's catalogue (the other fields come from it). */
  pinProduct(room: string, product: Product | { id: string; title?: string; price_cents?: number; image?: string }): Promise<{}>;
  unpinProduct(room: string, productId?: string): Promise<{}>;
  track(room: string, action: TrackAction, product?: string): Promise<{}>;
  /** A signed share link of the room naming this user (issue 12). */
  shareLink(room: string): Promise<OpReplies["share.link"]>;

  createLottery(room: string, params: LotteryParams): Promise<OpReplies["lottery.create"]>;
  enterLottery(room: string, lottery: string): Promise<OpReplies["lottery.enter"]>;
  drawLottery(room: string, lottery: string): Promise<OpReplies["lottery.draw"]>;
  lotteryRecord(room: string, lottery: string): Promise<LotteryAudit>;

  createSale(room: string, params: SaleParams): Promise<OpReplies["sale.create"]>;
  buy(
    room: string,
    sale: string,
    qty?: number,
    opts?: { cid?: string; attempts?: number },
  ): Promise<OpReplies["sale.buy"]>;

  issueCoupon(room: string, params: CouponParams): Promise<OpReplies["coupon.issue"]>;
  /** `cid` (generated if omitted) is reused across this call's own retries: never two claims. */
  claimCoupon(
    room: string,
    coupon: string,
    opts?: { cid?: string; attempts?: number },
  ): Promise<OpReplies["coupon.claim"]>;
  /**
   * Spend loyalty points on `reward` (an id of the app's reward catalog); `cid` (generated if
   * omitted) is reused across this call's own retries: never two redemptions.
   */
  redeemPoints(reward: string, opts?: { cid?: string; attempts?: number }): Promise<OpReplies["points.redeem"]>;
  sendRedPacket(room: string, params: RedPacketParams): Promise<OpReplies["redpacket.send"]>;
  grabRedPacket(room: string, packet: string): Promise<OpReplies["redpacket.grab"]>;

  createPoll(room: string, params: PollParams): Promise<OpReplies["poll.create"]>;
  vote(room: string, poll: string, option: number): Promise<{}>;
  /** The quality layer this user's plays of `publisher` get ("auto": the server's estimate). */
  setMediaLayer(room: string, publisher: string, layer: "high" | "low" | "auto"): Promise<OpReplies["media.layer"]>;
  announce(room: string, text: string, countdownTo?: number): Promise<{}>;

  mute(room: string, user: string, durationS?: number): Promise<{}>;
  unmute(room: string, user: string): Promise<{}>;
  kick(room: string, user: string, durationS?: number): Promise<{}>;
  setSlowMode(room: string, intervalS: number): Promise<{}>;
  setBannedWords(room: string, change: { add?: string[]; remove?: string[] }): Promise<OpReplies["mod.words"]>;

  /** The room assistant's settings (host, moderators). */
  setAssistant(room: string, settings: OpParams["assistant.set"]): Promise<OpReplies["assistant.set"]>;
  /** One room-wide, pinned answer (to a cluster of `assistant.questions` when `key` is given). */
  answerQuestions(room: string, text: string, key?: string): Promise<OpReplies["assistant.reply"]>;
  /** Mark the assistant's answer to the question at `questionSeq` wrong (raises its threshold). */
  markAnswerWrong(room: string, questionSeq: number, note?: string): Promise<OpReplies["assistant.wrong"]>;

  requestCohost(room: string): Promise<OpReplies["cohost.request"]>;
  inviteCohost(room: string, user: string): Promise<OpReplies["cohost.invite"]>;
  acceptCohost(room: string, target?: { request?: string; user?: string }): Promise<OpReplies["cohost.accept"]>;
  rejectCohost(room: string, target?: { request?: string; user?: string }): Promise<OpReplies["cohost.reject"]>;
  endCohost(room: string, user: string): Promise<OpReplies["cohost.end"]>;

  invitePk(room: string, targetRoom: string, durationS?: number): Promise<OpReplies["pk.invite"]>;
  acceptPk(room: string, pk: string): Promise<OpReplies["pk.accept"]>;
  rejectPk(room: string, pk: string): Promise<OpReplies["pk.reject"]>;
  endPk(room: string, pk: string): Promise<OpReplies["pk.end"]>;

  /** A handle bound to one room (the same object for the same id); does not join it. */
  room(id: string): Room;

  http<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  publish(room: string, stream: MediaStream, options?: MediaOptions): Promise<Publication>;
  play(room: string, publisher?: string, options?: MediaOptions): Promise<Playback>;
  followPublishers(room: string, container: HTMLElement, options?: FollowOptions): PublisherVideos;
}

// ---- per-room handle ---------------------------------------------------------------------

/** The RoomClient methods a Room handle carries with the room argument filled in. */
export type RoomMethodName =
  | "join" | "leave" | "resume" | "lastSeq" | "snapshot" | "publishers"
  | "start" | "end" | "sendBarrage" | "sendLike" | "sendGift" | "pinProduct" | "unpinProduct" | "track"
  | "shareLink"
  | "createLottery" | "enterLottery" | "drawLottery" | "lotteryRecord"
  | "createSale" | "buy" | "issueCoupon" | "claimCoupon" | "sendRedPacket" | "grabRedPacket"
  | "createPoll" | "vote" | "announce"
  | "mute" | "unmute" | "kick" | "setSlowMode" | "setBannedWords"
  | "setAssistant" | "answerQuestions" | "markAnswerWrong"
  | "requestCohost" | "inviteCohost" | "acceptCohost" | "rejectCohost" | "endCohost"
  | "invitePk" | "acceptPk" | "rejectPk" | "endPk"
  | "publish" | "play" | "followPublishers" | "setMediaLayer";

/** `(room: string, ...rest) => R` without its first parameter. */
export type WithoutRoom<F> = F extends (room: string, ...rest: infer A) => infer R ? (...args: A) => R : never;
export type RoomOps = { [K in RoomMethodName]: WithoutRoom<RoomClient[K]> };

/**
 * `client.room(id)`: listeners get only this room's events (server events by `meta.room`,
 * local ones such as `resync`, `gap`, `error` by their `room`); op methods need no room.
 */
export interface Room extends RoomOps {}
export declare class Room {
  readonly client: RoomClient;
  readonly id: string;
  on<K extends keyof AllEvents>(ev: K, fn: Listener<AllEvents[K]>): () => void;
  on(ev: string, fn: Listener<any>): () => void;
  once<K extends keyof AllEvents>(ev: K, fn: Listener<AllEvents[K]>): () => void;
  once(ev: string, fn: Listener<any>): () => void;
  off(ev: string, fn: Listener<any>): void;
  /** Remove every listener added through this handle. */
  offAll(): void;
  request<T = any>(op: string, params?: object, opts?: { timeoutMs?: number }): Promise<T>;
  /** Fire and forget (no reply); false while disconnected. */
  send(op: string, params?: object): boolean;
}
