// A typed Node.js client of the SaxGateway gRPC API: messages and service generated from the
// proto (src/gen, ts-proto), plus a deadline on every call, errors as SaxGatewayError with
// their details (google.rpc.BadRequest field violations, the RequestInfo's request ID), and
// streams as async iterators.
//
//   const client = new Client("localhost:8888", { timeoutMs: 30_000 });
//   const { texts } = await client.unary("generate", { model, query, extra_inputs: { temperature: 0.5 } });
//   for await (const item of client.stream("generateStream", { model, query })) { ... }
import * as grpc from "@grpc/grpc-js";

import { Any } from "./gen/google/protobuf/any";
import {
  BadRequest,
  DebugInfo,
  ErrorInfo,
  Help,
  LocalizedMessage,
  MessageFns,
  PreconditionFailure,
  QuotaFailure,
  RequestInfo,
  ResourceInfo,
  RetryInfo,
} from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";
import { MESSAGES, REQUESTS } from "./gen/oneofs";
import * as pb from "./gen/saxgateway/v1/gateway";

// The client's own @grpc/grpc-js: its Metadata and credentials (TLS) are what calls take.
// A project's own copy of grpc-js (another version, or none it may import, as under pnpm) is
// another class: the channel refuses its credentials ("must be a ChannelCredentials object").
export { grpc, pb };

type Methods = typeof pb.SaxGatewayDefinition.methods;
type Method = keyof Methods;
/** RPCs that return one message (generate, publishModel, ...). */
export type UnaryMethod = { [K in Method]: Methods[K]["responseStream"] extends false ? K : never }[Method];
/** RPCs that return a stream (generateStream, watchAddresses). */
export type StreamMethod = Exclude<Method, UnaryMethod>;
export type RequestOf<K extends Method> = ReturnType<Methods[K]["requestType"]["fromPartial"]>;
export type ResponseOf<K extends Method> = ReturnType<Methods[K]["responseType"]["decode"]>;

const DETAIL_PREFIX = "type.googleapis.com/google.rpc.";
const BAD_REQUEST = `${DETAIL_PREFIX}BadRequest`;
const REQUEST_INFO = `${DETAIL_PREFIX}RequestInfo`;
// gRPC's Retry-After, in milliseconds (gRFC A6), which the gateway sends beside retry-after.
const PUSHBACK_KEY = "grpc-retry-pushback-ms";
// The detail types of google/rpc/error_details.proto, by name: what a JSON error body's
// details are read as (others are left out, as the Python client leaves them).
const DETAIL_TYPES: Record<string, MessageFns<unknown>> = {
  BadRequest, DebugInfo, ErrorInfo, Help, LocalizedMessage, PreconditionFailure, QuotaFailure,
  RequestInfo, ResourceInfo, RetryInfo,
} as Record<string, MessageFns<unknown>>;

export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed call: its gRPC status code (and name), message, details (the BadRequest field
 * violations and the request ID read from them) and the status message as it arrived. */
export class SaxGatewayError extends Error {
  readonly code: grpc.status;
  readonly codeName: string;
  readonly fieldViolations: FieldViolation[];
  /** The status's details as sent (google.protobuf.Any: `type_url`, the encoded `value`):
   * google.rpc.BadRequest, google.rpc.RequestInfo, ... */
  readonly details: Any[];
  /** The call's ID (its x-request-id), from its google.rpc.RequestInfo detail; undefined
   * without one (or for a refusal Envoy made before it had read the request). */
  readonly requestId: string | undefined;
  /** The status message as it arrived (an older gateway's Envoy sent its own refusals' as the
   * HTTP API's whole JSON error body, whose `message` is this error's). */
  readonly rawMessage: string;
  /** How long the gateway asks a caller to wait before trying again, in milliseconds (on a
   * RESOURCE_EXHAUSTED that may mend: a rate, calls in flight, an overloaded model);
   * undefined where it asks nothing, or says no retry mends it (a request too large). */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: grpc.status,
    message: string,
    details: Status["details"] = [],
    rawMessage = message,
    retryAfterMs?: number,
  ) {
    super(`${grpc.status[code]}: ${message}`);
    this.name = new.target.name;
    this.code = code;
    this.codeName = grpc.status[code];
    this.details = details;
    this.rawMessage = rawMessage;
    this.retryAfterMs = retryAfterMs;
    this.fieldViolations = details
      .filter((detail) => detail.type_url === BAD_REQUEST)
      .flatMap((detail) => BadRequest.decode(detail.value).field_violations)
      .map(({ field, description }) => ({ field, description }));
    this.requestId = details
      .filter((detail) => detail.type_url === REQUEST_INFO)
      .map((detail) => RequestInfo.decode(detail.value).request_id)
      .find((id) => id !== "");
  }

  /** The error of a failed call, details read from its grpc-status-details-bin trailer. */
  static fromServiceError(error: grpc.ServiceError): SaxGatewayError {
    const [bin] = error.metadata?.get("grpc-status-details-bin") ?? [];
    const reply = envoyReply(error.details);
    const message = reply?.message ?? error.details;
    // Envoy gives its own refusals a Status of their own too, whose message is the same JSON
    // body: the message is the body's either way, the details the trailer's where it has them.
    const details = bin instanceof Buffer ? Status.decode(bin).details : reply?.details;
    const Class = ERROR_CLASSES[error.code] ?? ServerError;
    return new Class(error.code, message, details, error.details, pushback(error.metadata));
  }

  /** The error a stream reports in-band, in its last message. A code this client does not
   * know (a newer server's, or OK, which no error should carry) is UNKNOWN, as gRPC takes an
   * unknown code. */
  static fromStatus(status: Status): SaxGatewayError {
    const known = status.code !== grpc.status.OK && grpc.status[status.code] !== undefined;
    const code = known ? (status.code as grpc.status) : grpc.status.UNKNOWN;
    const Class = ERROR_CLASSES[code] ?? ServerError;
    return new Class(code, status.message, status.details);
  }
}

// One class per kind of failure, chosen by status code; the Python client's classes.
/** INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE (400): `fieldViolations` names the fields. */
export class BadRequestError extends SaxGatewayError {}
/** NOT_FOUND (404): the model (or cell) is not published. */
export class NotFoundError extends SaxGatewayError {}
/** ALREADY_EXISTS (409): the model is already published. */
export class AlreadyExistsError extends SaxGatewayError {}
/** ABORTED (409): the model changed under an update; read it again and decide again. */
export class AbortedError extends SaxGatewayError {}
/** PERMISSION_DENIED (403): the caller may not use this model. */
export class PermissionDeniedError extends SaxGatewayError {}
/** UNAUTHENTICATED (401): the call carried no valid credentials. */
export class UnauthenticatedError extends SaxGatewayError {}
/** RESOURCE_EXHAUSTED (429, 413): a rate, a quota or a size limit; `retryAfterMs` says when. */
export class ResourceExhaustedError extends SaxGatewayError {}
/** UNAVAILABLE (503): the gateway or the Sax cell could not be reached; retrying may help. */
export class UnavailableError extends SaxGatewayError {}
/** DEADLINE_EXCEEDED (504): the call's deadline expired first. */
export class DeadlineExceededError extends SaxGatewayError {}
/** CANCELLED (499): the call was cancelled (an AbortSignal, a stream left early). */
export class CancelledError extends SaxGatewayError {}

/** What a call on a closed client rejects with. */
function closedError(): SaxGatewayError {
  return new CancelledError(grpc.status.CANCELLED, "Channel closed!");
}
/** UNIMPLEMENTED (501): the model does not serve this method. */
export class UnimplementedError extends SaxGatewayError {}
/** UNKNOWN, INTERNAL, DATA_LOSS (500): the server failed. */
export class ServerError extends SaxGatewayError {}

const ERROR_CLASSES: Partial<Record<grpc.status, typeof SaxGatewayError>> = {
  [grpc.status.INVALID_ARGUMENT]: BadRequestError,
  [grpc.status.FAILED_PRECONDITION]: BadRequestError,
  [grpc.status.OUT_OF_RANGE]: BadRequestError,
  [grpc.status.NOT_FOUND]: NotFoundError,
  [grpc.status.ALREADY_EXISTS]: AlreadyExistsError,
  [grpc.status.ABORTED]: AbortedError,
  [grpc.status.PERMISSION_DENIED]: PermissionDeniedError,
  [grpc.status.UNAUTHENTICATED]: UnauthenticatedError,
  [grpc.status.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [grpc.status.UNAVAILABLE]: UnavailableError,
  [grpc.status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [grpc.status.CANCELLED]: CancelledError,
  [grpc.status.UNIMPLEMENTED]: UnimplementedError,
};

// The wait a failure's grpc-retry-pushback-ms asks for; undefined for none, or for a negative
// one (no retry mends it: a body over the limit).
function pushback(metadata: grpc.Metadata | undefined): number | undefined {
  const [value] = metadata?.get(PUSHBACK_KEY) ?? [];
  if (typeof value !== "string" || !/^-?\d+$/.test(value)) return undefined;
  const wait = Number(value);
  return wait >= 0 ? wait : undefined;
}

// A refusal Envoy made itself (no credentials, a role or a rate refused, a body too large)
// reaches a gRPC caller with a plain message and a Status trailer, as any failure; an older
// gateway's Envoy sent the HTTP API's JSON error body as the message,
// `{"code", "message", "details": [RequestInfo]}`: its `message` is the one to show, and its
// details are read as the trailer's would be.
function envoyReply(text: string): { message: string; details: Any[] } | undefined {
  if (!text.startsWith("{")) return undefined;
  let body: { message?: unknown; details?: unknown } | null;
  try {
    body = JSON.parse(text) as { message?: unknown; details?: unknown } | null;
  } catch {
    return undefined;
  }
  if (typeof body?.message !== "string") return undefined;
  const details: Any[] = [];
  for (const detail of Array.isArray(body.details) ? (body.details as unknown[]) : []) {
    const typeUrl = (detail as { "@type"?: unknown } | null)?.["@type"];
    if (typeof typeUrl !== "string" || !typeUrl.startsWith(DETAIL_PREFIX)) continue;
    const name = typeUrl.slice(DETAIL_PREFIX.length);
    if (!Object.hasOwn(DETAIL_TYPES, name)) continue; // a type this client does not know: left out
    const type = DETAIL_TYPES[name];
    details.push({ type_url: typeUrl, value: Buffer.from(type.encode(type.fromJSON(detail)).finish()) });
  }
  return { message: body.message, details };
}

// ts-proto makes each member of a oneof a field of its own, and encodes all that are set: a
// plain object such as `{text, image_bytes}` would go out as both (the HTTP API refuses that
// with a 400; a gRPC server reads the last). Refused here, with where it is (src/gen/oneofs.ts
// lists the oneofs, generated from the proto).
function checkOneofs(type: string | undefined, value: unknown, path: string): void {
  const message = type === undefined ? undefined : MESSAGES[type];
  if (message === undefined || value === null || typeof value !== "object") return;
  const fields = value as Record<string, unknown>;
  for (const [oneof, members] of Object.entries(message.oneofs)) {
    const set = members.filter((member) => fields[member] !== undefined && fields[member] !== null);
    if (set.length > 1) {
      const where = path === "" ? "" : `${path}: `;
      throw new TypeError(
        `${where}${set.slice(0, -1).join(", ")} and ${set.at(-1)} are ${set.length === 2 ? "both" : "all"} ` +
          `set, but ${type} ` +
          `takes one of ${members.join(", ")} (oneof ${oneof}): set one`,
      );
    }
  }
  for (const [field, lead] of Object.entries(message.fields)) {
    const inner = fields[field];
    if (inner === undefined || inner === null) continue;
    const at = path === "" ? field : `${path}.${field}`;
    if (lead.how === "repeated" && Array.isArray(inner)) {
      inner.forEach((item, i) => checkOneofs(lead.type, item, `${at}[${i}]`));
    } else if (lead.how === "map" && typeof inner === "object") {
      for (const [key, item] of Object.entries(inner)) checkOneofs(lead.type, item, `${at}[${JSON.stringify(key)}]`);
    } else {
      checkOneofs(lead.type, inner, at);
    }
  }
}

// A timeout longer than this (about 31 years) is no deadline; the gateway's own default
// timeout still bounds the call.
const ENDLESS_MS = 1e12;

export interface ClientOptions {
  /** Deadline of every call that sets none (default 60 s; Infinity: none of the client's, the
   * gateway's default timeout still ends the call). */
  timeoutMs?: number;
  /** Default: insecure (plain-text HTTP/2), as Envoy's local port serves; TLS:
   * `grpc.credentials.createSsl(...)`, of this package's `grpc` export. */
  credentials?: grpc.ChannelCredentials;
  /** Sent with every call (an API key: `authorization`); a call's own metadata is sent
   * beside it, its values replacing these for a key both set. */
  metadata?: grpc.Metadata;
  /** The channel's options, such as the retry policy of docs/clients.md:
   * `{"grpc.service_config": JSON.stringify(config)}`. */
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  timeoutMs?: number;
  metadata?: grpc.Metadata;
  /** Aborting it cancels the call, which then fails with CANCELLED. */
  signal?: AbortSignal;
}

// Cancels ``call`` when ``signal`` aborts (at once if it has); returns the undo, so that a
// signal shared by many calls does not keep a listener for each finished one.
function cancelOn(signal: AbortSignal | undefined, call: grpc.Call): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const cancel = () => call.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  return () => signal.removeEventListener("abort", cancel);
}

// One RPC's path and (de)serializers, from the generated service definition. TypeScript
// refuses a name the service lacks, or a stream called as unary; plain JavaScript gets here
// with them, and would fail deep in grpc-js ("Cannot read properties of undefined").
function rpc<K extends Method>(method: K, streaming: boolean) {
  const methods: Record<string, { responseStream: boolean } | undefined> = pb.SaxGatewayDefinition.methods;
  const found = Object.hasOwn(methods, method) ? methods[method] : undefined;
  if (found === undefined) {
    const names = Object.keys(methods).sort().join(", ");
    throw new TypeError(`${JSON.stringify(method)} is not an RPC of saxgateway.v1.SaxGateway; it has ${names}`);
  }
  if (found.responseStream !== streaming) {
    const right = found.responseStream ? "stream" : "unary";
    throw new TypeError(`${method} is ${streaming ? "not " : ""}a streaming RPC: use client.${right}("${method}", ...)`);
  }
  const def = pb.SaxGatewayDefinition.methods[method];
  const request = def.requestType as unknown as pb.MessageFns<RequestOf<K>>;
  const response = def.responseType as unknown as pb.MessageFns<ResponseOf<K>>;
  return {
    path: `/${pb.SaxGatewayDefinition.fullName}/${def.name}`,
    build: (partial: pb.DeepPartial<RequestOf<K>>) => {
      checkOneofs(REQUESTS[def.name], partial, "");
      return request.fromPartial(partial as never);
    },
    serialize: (value: RequestOf<K>) => Buffer.from(request.encode(value).finish()),
    deserialize: (bytes: Buffer) => response.decode(bytes),
  };
}

// An http(s) URL for the gateway's address: grpc-js resolved it as a host name and failed
// every call UNAVAILABLE, which says the gateway is down and a retry may help.
function checkAddress(address: string): void {
  if (!/^https?:\/\//i.test(address)) return;
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return; // not a URL after all: grpc-js says what it makes of it
  }
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  throw new TypeError(
    `'${address}' is a URL; the client takes the gateway's gRPC address, host:port ` +
      `('${url.hostname}:${port}'), and credentials for TLS`,
  );
}

export class Client {
  /** The grpc-js channel's client (pb.SaxGatewayDefinition describes every RPC). */
  readonly channel: grpc.Client;
  // Closed: grpc-js refuses a call with a plain Error ("Channel has been shut down"), which
  // no `instanceof SaxGatewayError` caught.
  private closed = false;
  private readonly timeoutMs: number;
  private readonly metadata: grpc.Metadata;

  constructor(address = "localhost:8888", options: ClientOptions = {}) {
    checkAddress(address);
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    // grpc-js's own receive limit is 4 MiB, where the gateway sends replies up to its message
    // limit (32 MiB by default): a 5 MB image or custom reply was a RESOURCE_EXHAUSTED, which
    // reads as a rate limit. The gateway bounds what it sends; the caller's options win.
    const channelOptions = { "grpc.max_receive_message_length": -1, ...options.channelOptions };
    this.channel = new grpc.Client(address, credentials, channelOptions);
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.metadata = options.metadata?.clone() ?? new grpc.Metadata();
  }

  /** Closes the channel: calls in flight run to their end; later calls reject with
   * CancelledError ("Channel closed!"), as the Python client's do. */
  close(): void {
    this.closed = true;
    this.channel.close();
  }

  /** Calls a unary RPC; rejects with a SaxGatewayError (CANCELLED once options.signal aborts). */
  unary<K extends UnaryMethod>(
    method: K,
    request: pb.DeepPartial<RequestOf<K>>,
    options: CallOptions = {},
  ): Promise<ResponseOf<K>> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(closedError());
      // In here, a wrong method rejects the promise, as every other failure does.
      const { path, build, serialize, deserialize } = rpc(method, false);
      let undo = () => {};
      const call = this.channel.makeUnaryRequest(
        path,
        serialize,
        deserialize,
        build(request),
        this.callMetadata(options),
        { deadline: this.deadline(options) },
        (error, response) => {
          undo();
          if (error) reject(SaxGatewayError.fromServiceError(error));
          else resolve(response as ResponseOf<K>);
        },
      );
      undo = cancelOn(options.signal, call);
    });
  }

  /** Calls a streaming RPC: its messages as they arrive; a failure (before the first message
   * or in-band in the last one) is thrown as a SaxGatewayError. Breaking out cancels the call,
   * except at `done`: the call has ended well by the time that message is yielded. */
  async *stream<K extends StreamMethod>(
    method: K,
    request: pb.DeepPartial<RequestOf<K>>,
    options: CallOptions = {},
  ): AsyncGenerator<ResponseOf<K>> {
    const { path, build, serialize, deserialize } = rpc(method, true);
    if (this.closed) throw closedError();
    const call = this.channel.makeServerStreamRequest(
      path,
      serialize,
      deserialize,
      build(request),
      this.callMetadata(options),
      { deadline: this.deadline(options) },
    );
    const undo = cancelOn(options.signal, call);
    const items = (call as AsyncIterable<ResponseOf<K>>)[Symbol.asyncIterator]();
    try {
      for (let next = await items.next(); !next.done; next = await items.next()) {
        const item = next.value;
        // A consumer that stops at the last message (`done`, as a loop that breaks there
        // does) would cancel a call that succeeded, and the gateway would count it so: the
        // call's status follows its last message, so read it first. A failed call's last
        // message is in-band too: its status, which follows, is thrown instead (its trailers
        // say when to retry), or the in-band error if it ended OK.
        if ((item as { done?: boolean }).done) while (!(await items.next()).done);
        const error = (item as { error?: Status }).error;
        if (error && error.code !== grpc.status.OK) throw SaxGatewayError.fromStatus(error);
        yield item;
      }
    } catch (error) {
      if (error instanceof SaxGatewayError) throw error;
      throw SaxGatewayError.fromServiceError(error as grpc.ServiceError);
    } finally {
      undo();
      call.cancel();
    }
  }

  // The client's metadata with the call's own: for a key both set, the call's values.
  private callMetadata(options: CallOptions): grpc.Metadata {
    const merged = this.metadata.clone();
    const own = options.metadata;
    if (own === undefined) return merged;
    for (const key of Object.keys(own.getMap())) {
      merged.remove(key);
      for (const value of own.get(key)) merged.add(key, value);
    }
    return merged;
  }

  private deadline(options: CallOptions): grpc.Deadline {
    const ms = options.timeoutMs ?? this.timeoutMs;
    if (typeof ms !== "number" || Number.isNaN(ms)) {
      throw new TypeError(`timeoutMs must be a number of milliseconds, not ${String(ms)}`);
    }
    // grpc-js throws from a timer, where no caller can catch it, for a deadline it cannot
    // write (Infinity's Invalid Date, or past 99,999,999 hours): either is none of the client's.
    return ms > ENDLESS_MS ? Infinity : new Date(Date.now() + ms);
  }
}
