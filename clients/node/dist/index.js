"use strict";
var __createBinding = (this && this.__createBinding) || (Object.create ? (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    var desc = Object.getOwnPropertyDescriptor(m, k);
    if (!desc || ("get" in desc ? !m.__esModule : desc.writable || desc.configurable)) {
      desc = { enumerable: true, get: function() { return m[k]; } };
    }
    Object.defineProperty(o, k2, desc);
}) : (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    o[k2] = m[k];
}));
var __setModuleDefault = (this && this.__setModuleDefault) || (Object.create ? (function(o, v) {
    Object.defineProperty(o, "default", { enumerable: true, value: v });
}) : function(o, v) {
    o["default"] = v;
});
var __importStar = (this && this.__importStar) || (function () {
    var ownKeys = function(o) {
        ownKeys = Object.getOwnPropertyNames || function (o) {
            var ar = [];
            for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) ar[ar.length] = k;
            return ar;
        };
        return ownKeys(o);
    };
    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };
})();
Object.defineProperty(exports, "__esModule", { value: true });
exports.Client = exports.ServerError = exports.UnimplementedError = exports.CancelledError = exports.DeadlineExceededError = exports.UnavailableError = exports.ResourceExhaustedError = exports.UnauthenticatedError = exports.PermissionDeniedError = exports.AbortedError = exports.AlreadyExistsError = exports.NotFoundError = exports.BadRequestError = exports.SaxGatewayError = exports.pb = exports.grpc = void 0;
// A typed Node.js client of the SaxGateway gRPC API: messages and service generated from the
// proto (src/gen, ts-proto), plus a deadline on every call, errors as SaxGatewayError with
// their details (google.rpc.BadRequest field violations, the RequestInfo's request ID), and
// streams as async iterators.
//
//   const client = new Client("localhost:8888", { timeoutMs: 30_000 });
//   const { texts } = await client.unary("generate", { model, query, extra_inputs: { temperature: 0.5 } });
//   for await (const item of client.stream("generateStream", { model, query })) { ... }
const grpc = __importStar(require("@grpc/grpc-js"));
exports.grpc = grpc;
const error_details_1 = require("./gen/google/rpc/error_details");
const status_1 = require("./gen/google/rpc/status");
const oneofs_1 = require("./gen/oneofs");
const pb = __importStar(require("./gen/saxgateway/v1/gateway"));
exports.pb = pb;
const DETAIL_PREFIX = "type.googleapis.com/google.rpc.";
const BAD_REQUEST = `${DETAIL_PREFIX}BadRequest`;
const REQUEST_INFO = `${DETAIL_PREFIX}RequestInfo`;
// gRPC's Retry-After, in milliseconds (gRFC A6), which the gateway sends beside retry-after.
const PUSHBACK_KEY = "grpc-retry-pushback-ms";
// The detail types of google/rpc/error_details.proto, by name: what a JSON error body's
// details are read as (others are left out, as the Python client leaves them).
const DETAIL_TYPES = {
    BadRequest: error_details_1.BadRequest, DebugInfo: error_details_1.DebugInfo, ErrorInfo: error_details_1.ErrorInfo, Help: error_details_1.Help, LocalizedMessage: error_details_1.LocalizedMessage, PreconditionFailure: error_details_1.PreconditionFailure, QuotaFailure: error_details_1.QuotaFailure,
    RequestInfo: error_details_1.RequestInfo, ResourceInfo: error_details_1.ResourceInfo, RetryInfo: error_details_1.RetryInfo,
};
/** A failed call: its gRPC status code (and name), message, details (the BadRequest field
 * violations and the request ID read from them) and the status message as it arrived. */
class SaxGatewayError extends Error {
    code;
    codeName;
    fieldViolations;
    /** The status's details as sent (google.protobuf.Any: `type_url`, the encoded `value`):
     * google.rpc.BadRequest, google.rpc.RequestInfo, ... */
    details;
    /** The call's ID (its x-request-id), from its google.rpc.RequestInfo detail; undefined
     * without one (or for a refusal Envoy made before it had read the request). */
    requestId;
    /** The status message as it arrived (an older gateway's Envoy sent its own refusals' as the
     * HTTP API's whole JSON error body, whose `message` is this error's). */
    rawMessage;
    /** How long the gateway asks a caller to wait before trying again, in milliseconds (on a
     * RESOURCE_EXHAUSTED that may mend: a rate, calls in flight, an overloaded model);
     * undefined where it asks nothing, or says no retry mends it (a request too large). */
    retryAfterMs;
    constructor(code, message, details = [], rawMessage = message, retryAfterMs) {
        super(`${grpc.status[code]}: ${message}`);
        this.name = new.target.name;
        this.code = code;
        this.codeName = grpc.status[code];
        this.details = details;
        this.rawMessage = rawMessage;
        this.retryAfterMs = retryAfterMs;
        this.fieldViolations = details
            .filter((detail) => detail.type_url === BAD_REQUEST)
            .flatMap((detail) => error_details_1.BadRequest.decode(detail.value).field_violations)
            .map(({ field, description }) => ({ field, description }));
        this.requestId = details
            .filter((detail) => detail.type_url === REQUEST_INFO)
            .map((detail) => error_details_1.RequestInfo.decode(detail.value).request_id)
            .find((id) => id !== "");
    }
    /** The error of a failed call, details read from its grpc-status-details-bin trailer. */
    static fromServiceError(error) {
        const [bin] = error.metadata?.get("grpc-status-details-bin") ?? [];
        const reply = envoyReply(error.details);
        const message = reply?.message ?? error.details;
        // Envoy gives its own refusals a Status of their own too, whose message is the same JSON
        // body: the message is the body's either way, the details the trailer's where it has them.
        const details = bin instanceof Buffer ? status_1.Status.decode(bin).details : reply?.details;
        const Class = ERROR_CLASSES[error.code] ?? ServerError;
        return new Class(error.code, message, details, error.details, pushback(error.metadata));
    }
    /** The error a stream reports in-band, in its last message. A code this client does not
     * know (a newer server's, or OK, which no error should carry) is UNKNOWN, as gRPC takes an
     * unknown code. */
    static fromStatus(status) {
        const known = status.code !== grpc.status.OK && grpc.status[status.code] !== undefined;
        const code = known ? status.code : grpc.status.UNKNOWN;
        const Class = ERROR_CLASSES[code] ?? ServerError;
        return new Class(code, status.message, status.details);
    }
}
exports.SaxGatewayError = SaxGatewayError;
// One class per kind of failure, chosen by status code; the Python client's classes.
/** INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE (400): `fieldViolations` names the fields. */
class BadRequestError extends SaxGatewayError {
}
exports.BadRequestError = BadRequestError;
/** NOT_FOUND (404): the model (or cell) is not published. */
class NotFoundError extends SaxGatewayError {
}
exports.NotFoundError = NotFoundError;
/** ALREADY_EXISTS (409): the model is already published. */
class AlreadyExistsError extends SaxGatewayError {
}
exports.AlreadyExistsError = AlreadyExistsError;
/** ABORTED (409): the model changed under an update; read it again and decide again. */
class AbortedError extends SaxGatewayError {
}
exports.AbortedError = AbortedError;
/** PERMISSION_DENIED (403): the caller may not use this model. */
class PermissionDeniedError extends SaxGatewayError {
}
exports.PermissionDeniedError = PermissionDeniedError;
/** UNAUTHENTICATED (401): the call carried no valid credentials. */
class UnauthenticatedError extends SaxGatewayError {
}
exports.UnauthenticatedError = UnauthenticatedError;
/** RESOURCE_EXHAUSTED (429, 413): a rate, a quota or a size limit; `retryAfterMs` says when. */
class ResourceExhaustedError extends SaxGatewayError {
}
exports.ResourceExhaustedError = ResourceExhaustedError;
/** UNAVAILABLE (503): the gateway or the Sax cell could not be reached; retrying may help. */
class UnavailableError extends SaxGatewayError {
}
exports.UnavailableError = UnavailableError;
/** DEADLINE_EXCEEDED (504): the call's deadline expired first. */
class DeadlineExceededError extends SaxGatewayError {
}
exports.DeadlineExceededError = DeadlineExceededError;
/** CANCELLED (499): the call was cancelled (an AbortSignal, a stream left early). */
class CancelledError extends SaxGatewayError {
}
exports.CancelledError = CancelledError;
/** What a call on a closed client rejects with. */
function closedError() {
    return new CancelledError(grpc.status.CANCELLED, "Channel closed!");
}
/** UNIMPLEMENTED (501): the model does not serve this method. */
class UnimplementedError extends SaxGatewayError {
}
exports.UnimplementedError = UnimplementedError;
/** UNKNOWN, INTERNAL, DATA_LOSS (500): the server failed. */
class ServerError extends SaxGatewayError {
}
exports.ServerError = ServerError;
const ERROR_CLASSES = {
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
function pushback(metadata) {
    const [value] = metadata?.get(PUSHBACK_KEY) ?? [];
    if (typeof value !== "string" || !/^-?\d+$/.test(value))
        return undefined;
    const wait = Number(value);
    return wait >= 0 ? wait : undefined;
}
// A refusal Envoy made itself (no credentials, a role or a rate refused, a body too large)
// reaches a gRPC caller with a plain message and a Status trailer, as any failure; an older
// gateway's Envoy sent the HTTP API's JSON error body as the message,
// `{"code", "message", "details": [RequestInfo]}`: its `message` is the one to show, and its
// details are read as the trailer's would be.
function envoyReply(text) {
    if (!text.startsWith("{"))
        return undefined;
    let body;
    try {
        body = JSON.parse(text);
    }
    catch {
        return undefined;
    }
    if (typeof body?.message !== "string")
        return undefined;
    const details = [];
    for (const detail of Array.isArray(body.details) ? body.details : []) {
        const typeUrl = detail?.["@type"];
        if (typeof typeUrl !== "string" || !typeUrl.startsWith(DETAIL_PREFIX))
            continue;
        const name = typeUrl.slice(DETAIL_PREFIX.length);
        if (!Object.hasOwn(DETAIL_TYPES, name))
            continue; // a type this client does not know: left out
        const type = DETAIL_TYPES[name];
        details.push({ type_url: typeUrl, value: Buffer.from(type.encode(type.fromJSON(detail)).finish()) });
    }
    return { message: body.message, details };
}
// ts-proto makes each member of a oneof a field of its own, and encodes all that are set: a
// plain object such as `{text, image_bytes}` would go out as both (the HTTP API refuses that
// with a 400; a gRPC server reads the last). Refused here, with where it is (src/gen/oneofs.ts
// lists the oneofs, generated from the proto).
function checkOneofs(type, value, path) {
    const message = type === undefined ? undefined : oneofs_1.MESSAGES[type];
    if (message === undefined || value === null || typeof value !== "object")
        return;
    const fields = value;
    for (const [oneof, members] of Object.entries(message.oneofs)) {
        const set = members.filter((member) => fields[member] !== undefined && fields[member] !== null);
        if (set.length > 1) {
            const where = path === "" ? "" : `${path}: `;
            throw new TypeError(`${where}${set.slice(0, -1).join(", ")} and ${set.at(-1)} are ${set.length === 2 ? "both" : "all"} ` +
                `set, but ${type} ` +
                `takes one of ${members.join(", ")} (oneof ${oneof}): set one`);
        }
    }
    for (const [field, lead] of Object.entries(message.fields)) {
        const inner = fields[field];
        if (inner === undefined || inner === null)
            continue;
        const at = path === "" ? field : `${path}.${field}`;
        if (lead.how === "repeated" && Array.isArray(inner)) {
            inner.forEach((item, i) => checkOneofs(lead.type, item, `${at}[${i}]`));
        }
        else if (lead.how === "map" && typeof inner === "object") {
            for (const [key, item] of Object.entries(inner))
                checkOneofs(lead.type, item, `${at}[${JSON.stringify(key)}]`);
        }
        else {
            checkOneofs(lead.type, inner, at);
        }
    }
}
// A timeout longer than this (about 31 years) is no deadline; the gateway's own default
// timeout still bounds the call.
const ENDLESS_MS = 1e12;
// Cancels ``call`` when ``signal`` aborts (at once if it has); returns the undo, so that a
// signal shared by many calls does not keep a listener for each finished one.
function cancelOn(signal, call) {
    if (!signal)
        return () => { };
    if (signal.aborted) {
        call.cancel();
        return () => { };
    }
    const cancel = () => call.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    return () => signal.removeEventListener("abort", cancel);
}
// One RPC's path and (de)serializers, from the generated service definition. TypeScript
// refuses a name the service lacks, or a stream called as unary; plain JavaScript gets here
// with them, and would fail deep in grpc-js ("Cannot read properties of undefined").
function rpc(method, streaming) {
    const methods = pb.SaxGatewayDefinition.methods;
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
    const request = def.requestType;
    const response = def.responseType;
    return {
        path: `/${pb.SaxGatewayDefinition.fullName}/${def.name}`,
        build: (partial) => {
            checkOneofs(oneofs_1.REQUESTS[def.name], partial, "");
            return request.fromPartial(partial);
        },
        serialize: (value) => Buffer.from(request.encode(value).finish()),
        deserialize: (bytes) => response.decode(bytes),
    };
}
// An http(s) URL for the gateway's address: grpc-js resolved it as a host name and failed
// every call UNAVAILABLE, which says the gateway is down and a retry may help.
function checkAddress(address) {
    if (!/^https?:\/\//i.test(address))
        return;
    let url;
    try {
        url = new URL(address);
    }
    catch {
        return; // not a URL after all: grpc-js says what it makes of it
    }
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    throw new TypeError(`'${address}' is a URL; the client takes the gateway's gRPC address, host:port ` +
        `('${url.hostname}:${port}'), and credentials for TLS`);
}
class Client {
    /** The grpc-js channel's client (pb.SaxGatewayDefinition describes every RPC). */
    channel;
    // Closed: grpc-js refuses a call with a plain Error ("Channel has been shut down"), which
    // no `instanceof SaxGatewayError` caught.
    closed = false;
    timeoutMs;
    metadata;
    constructor(address = "localhost:8888", options = {}) {
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
    close() {
        this.closed = true;
        this.channel.close();
    }
    /** Calls a unary RPC; rejects with a SaxGatewayError (CANCELLED once options.signal aborts). */
    unary(method, request, options = {}) {
        return new Promise((resolve, reject) => {
            if (this.closed)
                return reject(closedError());
            // In here, a wrong method rejects the promise, as every other failure does.
            const { path, build, serialize, deserialize } = rpc(method, false);
            let undo = () => { };
            const call = this.channel.makeUnaryRequest(path, serialize, deserialize, build(request), this.callMetadata(options), { deadline: this.deadline(options) }, (error, response) => {
                undo();
                if (error)
                    reject(SaxGatewayError.fromServiceError(error));
                else
                    resolve(response);
            });
            undo = cancelOn(options.signal, call);
        });
    }
    /** Calls a streaming RPC: its messages as they arrive; a failure (before the first message
     * or in-band in the last one) is thrown as a SaxGatewayError. Breaking out cancels the call,
     * except at `done`: the call has ended well by the time that message is yielded. */
    async *stream(method, request, options = {}) {
        const { path, build, serialize, deserialize } = rpc(method, true);
        if (this.closed)
            throw closedError();
        const call = this.channel.makeServerStreamRequest(path, serialize, deserialize, build(request), this.callMetadata(options), { deadline: this.deadline(options) });
        const undo = cancelOn(options.signal, call);
        const items = call[Symbol.asyncIterator]();
        try {
            for (let next = await items.next(); !next.done; next = await items.next()) {
                const item = next.value;
                // A consumer that stops at the last message (`done`, as a loop that breaks there
                // does) would cancel a call that succeeded, and the gateway would count it so: the
                // call's status follows its last message, so read it first. A failed call's last
                // message is in-band too: its status, which follows, is thrown instead (its trailers
                // say when to retry), or the in-band error if it ended OK.
                if (item.done)
                    while (!(await items.next()).done)
                        ;
                const error = item.error;
                if (error && error.code !== grpc.status.OK)
                    throw SaxGatewayError.fromStatus(error);
                yield item;
            }
        }
        catch (error) {
            if (error instanceof SaxGatewayError)
                throw error;
            throw SaxGatewayError.fromServiceError(error);
        }
        finally {
            undo();
            call.cancel();
        }
    }
    // The client's metadata with the call's own: for a key both set, the call's values.
    callMetadata(options) {
        const merged = this.metadata.clone();
        const own = options.metadata;
        if (own === undefined)
            return merged;
        for (const key of Object.keys(own.getMap())) {
            merged.remove(key);
            for (const value of own.get(key))
                merged.add(key, value);
        }
        return merged;
    }
    deadline(options) {
        const ms = options.timeoutMs ?? this.timeoutMs;
        if (typeof ms !== "number" || Number.isNaN(ms)) {
            throw new TypeError(`timeoutMs must be a number of milliseconds, not ${String(ms)}`);
        }
        // grpc-js throws from a timer, where no caller can catch it, for a deadline it cannot
        // write (Infinity's Invalid Date, or past 99,999,999 hours): either is none of the client's.
        return ms > ENDLESS_MS ? Infinity : new Date(Date.now() + ms);
    }
}
exports.Client = Client;
