import * as grpc from "@grpc/grpc-js";
import { Any } from "./gen/google/protobuf/any";
import { Status } from "./gen/google/rpc/status";
import * as pb from "./gen/saxgateway/v1/gateway";
export { grpc, pb };
type Methods = typeof pb.SaxGatewayDefinition.methods;
type Method = keyof Methods;
/** RPCs that return one message (generate, publishModel, ...). */
export type UnaryMethod = {
    [K in Method]: Methods[K]["responseStream"] extends false ? K : never;
}[Method];
/** RPCs that return a stream (generateStream, watchAddresses). */
export type StreamMethod = Exclude<Method, UnaryMethod>;
export type RequestOf<K extends Method> = ReturnType<Methods[K]["requestType"]["fromPartial"]>;
export type ResponseOf<K extends Method> = ReturnType<Methods[K]["responseType"]["decode"]>;
export interface FieldViolation {
    field: string;
    description: string;
}
/** A failed call: its gRPC status code (and name), message, details (the BadRequest field
 * violations and the request ID read from them) and the status message as it arrived. */
export declare class SaxGatewayError extends Error {
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
    constructor(code: grpc.status, message: string, details?: Status["details"], rawMessage?: string, retryAfterMs?: number);
    /** The error of a failed call, details read from its grpc-status-details-bin trailer. */
    static fromServiceError(error: grpc.ServiceError): SaxGatewayError;
    /** The error a stream reports in-band, in its last message. A code this client does not
     * know (a newer server's, or OK, which no error should carry) is UNKNOWN, as gRPC takes an
     * unknown code. */
    static fromStatus(status: Status): SaxGatewayError;
}
/** INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE (400): `fieldViolations` names the fields. */
export declare class BadRequestError extends SaxGatewayError {
}
/** NOT_FOUND (404): the model (or cell) is not published. */
export declare class NotFoundError extends SaxGatewayError {
}
/** ALREADY_EXISTS (409): the model is already published. */
export declare class AlreadyExistsError extends SaxGatewayError {
}
/** ABORTED (409): the model changed under an update; read it again and decide again. */
export declare class AbortedError extends SaxGatewayError {
}
/** PERMISSION_DENIED (403): the caller may not use this model. */
export declare class PermissionDeniedError extends SaxGatewayError {
}
/** UNAUTHENTICATED (401): the call carried no valid credentials. */
export declare class UnauthenticatedError extends SaxGatewayError {
}
/** RESOURCE_EXHAUSTED (429, 413): a rate, a quota or a size limit; `retryAfterMs` says when. */
export declare class ResourceExhaustedError extends SaxGatewayError {
}
/** UNAVAILABLE (503): the gateway or the Sax cell could not be reached; retrying may help. */
export declare class UnavailableError extends SaxGatewayError {
}
/** DEADLINE_EXCEEDED (504): the call's deadline expired first. */
export declare class DeadlineExceededError extends SaxGatewayError {
}
/** CANCELLED (499): the call was cancelled (an AbortSignal, a stream left early). */
export declare class CancelledError extends SaxGatewayError {
}
/** UNIMPLEMENTED (501): the model does not serve this method. */
export declare class UnimplementedError extends SaxGatewayError {
}
/** UNKNOWN, INTERNAL, DATA_LOSS (500): the server failed. */
export declare class ServerError extends SaxGatewayError {
}
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
export declare class Client {
    /** The grpc-js channel's client (pb.SaxGatewayDefinition describes every RPC). */
    readonly channel: grpc.Client;
    private closed;
    private readonly timeoutMs;
    private readonly metadata;
    constructor(address?: string, options?: ClientOptions);
    /** Closes the channel: calls in flight run to their end; later calls reject with
     * CancelledError ("Channel closed!"), as the Python client's do. */
    close(): void;
    /** Calls a unary RPC; rejects with a SaxGatewayError (CANCELLED once options.signal aborts). */
    unary<K extends UnaryMethod>(method: K, request: pb.DeepPartial<RequestOf<K>>, options?: CallOptions): Promise<ResponseOf<K>>;
    /** Calls a streaming RPC: its messages as they arrive; a failure (before the first message
     * or in-band in the last one) is thrown as a SaxGatewayError. Breaking out cancels the call,
     * except at `done`: the call has ended well by the time that message is yielded. */
    stream<K extends StreamMethod>(method: K, request: pb.DeepPartial<RequestOf<K>>, options?: CallOptions): AsyncGenerator<ResponseOf<K>>;
    private callMetadata;
    private deadline;
}
