import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { Duration } from "../../google/protobuf/duration";
import { Status } from "../../google/rpc/status";
export declare const protobufPackage = "saxgateway.v1";
export declare const protobufFileName = "saxgateway/v1/gateway.proto";
/** Request of GetInfo. */
export interface GetInfoRequest {
}
/** Response of GetInfo. */
export interface GetInfoResponse {
    /** Output only. Always "HTTP Server for SAX Client", as the original server said. */
    message: string;
    /** Output only. The gateway's version. */
    version: string;
}
/** Request of PublishModel. */
export interface PublishModelRequest {
    /** Required. The model ID, e.g. "/sax/test/lm2b". */
    model: string;
    /**
     * Required. The registered model path, e.g.
     * "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest".
     */
    model_path: string;
    /**
     * Required. The checkpoint location, or "None" for random weights; no ".."
     * path segment.
     */
    checkpoint: string;
    /**
     * How many model servers should serve the model. Defaults to 1; 0 publishes
     * without serving.
     */
    replicas?: number | undefined;
    /**
     * Model config overrides, e.g. {"BATCH_SIZE": "1"}. Keys are attribute names
     * of the model's config: letters, digits and _, not starting with a digit.
     */
    overrides: {
        [key: string]: string;
    };
}
export interface PublishModelRequest_OverridesEntry {
    key: string;
    value: string;
}
/** Response of PublishModel. */
export interface PublishModelResponse {
    /** Output only. The model ID. */
    model: string;
    /** Output only. The model path. */
    path: string;
    /** Output only. The checkpoint. */
    checkpoint: string;
    /** Output only. The requested replicas. */
    replicas: number;
}
/** Request of ListCell. */
export interface ListCellRequest {
    /** Required. The model ID. */
    model: string;
}
/** Response of ListCell. */
export interface ListCellResponse {
    /** Output only. The model ID. */
    model: string;
    /** Output only. The model path. */
    model_path: string;
    /** Output only. The checkpoint. */
    checkpoint: string;
    /** Output only. The requested replicas. */
    max_replicas: number;
    /** Output only. Replicas currently serving. */
    active_replicas: number;
}
/** Request of GetModel. */
export interface GetModelRequest {
    /** Required. The model ID. */
    model: string;
}
/** Response of GetModel. */
export interface GetModelResponse {
    /** Output only. The model. */
    model: ModelInfo | undefined;
}
/** A published model as the admin server sees it. */
export interface ModelInfo {
    /** Output only. The model ID. */
    model: string;
    /** Output only. The model path. */
    model_path: string;
    /** Output only. The checkpoint. */
    checkpoint: string;
    /** Output only. The requested replicas. */
    max_replicas: number;
    /** Output only. Replicas currently serving. */
    active_replicas: number;
    /** Output only. Model config overrides. */
    overrides: {
        [key: string]: string;
    };
    /** Output only. Addresses of the model servers serving it, sorted. */
    addresses: string[];
    /** Output only. Data methods it supports, e.g. "lm.generate". */
    methods: string[];
    /**
     * Output only. Why the model failed to load, when no replica serves it because every
     * model server it was assigned to failed to load it. Data calls then fail at once with
     * FAILED_PRECONDITION and this text. Absent otherwise.
     */
    load_error?: string | undefined;
    /**
     * Output only. ACLs of its data methods: Sax method name (e.g. "lm.generate")
     * -> ACL. A method not here is open to every client the gateway admits.
     */
    method_acls: {
        [key: string]: string;
    };
}
export interface ModelInfo_OverridesEntry {
    key: string;
    value: string;
}
export interface ModelInfo_MethodAclsEntry {
    key: string;
    value: string;
}
/** Request of ListModels. */
export interface ListModelsRequest {
    /** Required. The cell, e.g. "/sax/test". */
    sax_cell: string;
    /**
     * The most models to return, up to 1000 (more are taken as 1000); a page
     * holds fewer when more would pass the gateway's message limit (32 MiB). 0
     * returns them all in one reply, which fails INVALID_ARGUMENT when their
     * definitions are over that limit.
     */
    page_size: number;
    /** The `next_page_token` of the previous page; empty for the first page. */
    page_token: string;
}
/** Response of ListModels. */
export interface ListModelsResponse {
    /** Output only. The cell. */
    sax_cell: string;
    /** Output only. Its published models, sorted by model ID. */
    models: ModelInfo[];
    /** Output only. The `page_token` of the next page; empty on the last page. */
    next_page_token: string;
}
/** Request of ListCells. */
export interface ListCellsRequest {
}
/** Response of ListCells. */
export interface ListCellsResponse {
    /** Output only. Cells under SAX_ROOT, e.g. "/sax/test", sorted. */
    cells: string[];
}
/** Request of UpdateModel. */
export interface UpdateModelRequest {
    /** Required. The model ID. */
    model: string;
    /**
     * Empty, or the current model path: Sax refuses to change a model's path
     * (FAILED_PRECONDITION); unpublish and publish it again instead.
     */
    model_path: string;
    /** New checkpoint; empty keeps the current one. */
    checkpoint: string;
    /** New replica count; unset keeps the current one. */
    replicas?: number | undefined;
    /**
     * New overrides, replacing all current ones (the model is reloaded); empty
     * keeps the current ones unless clear_overrides is set.
     */
    overrides: {
        [key: string]: string;
    };
    /**
     * Removes every override (the model is reloaded without them); to remove
     * one, send the others in overrides instead.
     */
    clear_overrides: boolean;
}
export interface UpdateModelRequest_OverridesEntry {
    key: string;
    value: string;
}
/** Response of UpdateModel. */
export interface UpdateModelResponse {
    /** Output only. The model ID. */
    model: string;
    /** Output only. The model path. */
    path: string;
    /** Output only. The checkpoint. */
    checkpoint: string;
    /** Output only. The requested replicas. */
    replicas: number;
    /** Output only. The overrides the model now has. */
    overrides: {
        [key: string]: string;
    };
}
export interface UpdateModelResponse_OverridesEntry {
    key: string;
    value: string;
}
/** Request of UnpublishModel. */
export interface UnpublishModelRequest {
    /** Required. The model ID. */
    model: string;
}
/** Response of UnpublishModel. */
export interface UnpublishModelResponse {
    /** Output only. The model ID. */
    model: string;
}
/** Request of Generate. */
export interface GenerateRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The prompt. */
    query: string;
    /**
     * Extra inputs by name: a number (e.g. "temperature": 0.5), a string, or a
     * list of numbers (a tensor).
     */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call; the shorter of this and the gRPC deadline wins. */
    timeout: Duration | undefined;
}
export interface GenerateRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** One generated sample. */
export interface DecodedText {
    /** Output only. The text. */
    text: string;
    /** Output only. Its score. */
    score: number;
}
/** Response of Generate. */
export interface GenerateResponse {
    /** Output only. Samples, best first. */
    texts: DecodedText[];
}
/** Request of GenerateStream. */
export interface GenerateStreamRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The prompt. */
    query: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the whole stream; the shorter of this and the gRPC deadline wins. */
    timeout: Duration | undefined;
}
export interface GenerateStreamRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** New text of one sample since the previous message. */
export interface TextDelta {
    /** Output only. Which sample (0-based). */
    index: number;
    /**
     * Output only. Characters (Unicode code points, not UTF-16 units: a JavaScript
     * client cuts with `Array.from(text)`) to drop from the end of the sample's text
     * before appending `text`; 0 unless the model revised its output.
     */
    backtrack: number;
    /** Output only. Text to append. */
    text: string;
    /** Output only. The sample's score so far. */
    score: number;
}
/** One message of GenerateStream. */
export interface GenerateStreamResponse {
    /** Output only. New text per sample; empty on the final message. */
    deltas: TextDelta[];
    /**
     * Output only. True on the final message, which also carries either
     * `texts` or `error`.
     */
    done: boolean;
    /** Output only. On a successful final message: complete samples and scores. */
    texts: DecodedText[];
    /** Output only. On a failed final message: why the stream ended. */
    error: Status | undefined;
}
/** Request of Score. */
export interface ScoreRequest {
    /** Required. The model ID. */
    model: string;
    /** The prefix. */
    prefix: string;
    /** Required. Suffixes to score. */
    suffix: string[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface ScoreRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of Score. */
export interface ScoreResponse {
    /** Output only. Log-probability of each suffix, in request order. */
    logp: number[];
}
/** Request of Embed. */
export interface EmbedRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. Text to embed. */
    text: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface EmbedRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of Embed. */
export interface EmbedResponse {
    /** Output only. The embedding. */
    embedding: number[];
}
/** Request of Gradient. */
export interface GradientRequest {
    /** Required. The model ID. */
    model: string;
    /** The prefix. */
    prefix: string;
    /** Required. The suffix. */
    suffix: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface GradientRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** A flattened gradient. */
export interface GradientValues {
    /** Output only. Values. */
    values: number[];
}
/** Response of Gradient. */
export interface GradientResponse {
    /** Output only. Scores. */
    score: number[];
    /** Output only. Input name -> gradient. */
    gradients: {
        [key: string]: GradientValues;
    };
}
export interface GradientResponse_GradientsEntry {
    key: string;
    value: GradientValues | undefined;
}
/** Request of Classify. */
export interface ClassifyRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The encoded image (base64 in JSON). */
    image_bytes: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface ClassifyRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of Classify. */
export interface ClassifyResponse {
    /** Output only. Labels and scores, best first. */
    texts: DecodedText[];
}
/** Request of TextToImage. */
export interface TextToImageRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The prompt. */
    text: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface TextToImageRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** A generated image. */
export interface GeneratedImage {
    /** Output only. The encoded image (base64 in JSON). */
    image: Buffer;
    /** Output only. Its score. */
    score: number;
}
/** Response of TextToImage. */
export interface TextToImageResponse {
    /** Output only. Images, best first. */
    images: GeneratedImage[];
}
/** Request of EmbedImage. */
export interface EmbedImageRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The encoded image (base64 in JSON). */
    image_bytes: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface EmbedImageRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of EmbedImage. */
export interface EmbedImageResponse {
    /** Output only. The embedding. */
    embedding: number[];
}
/** Request of Detect. */
export interface DetectRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The encoded image (base64 in JSON). */
    image_bytes: Buffer;
    /** Labels to look for, for open-vocabulary detectors. */
    text: string[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
    /**
     * Regions of the image to look in, for detectors that take them (such as
     * segmenters, which answer a mask for each); at most 1024.
     */
    boxes_of_interest: Region[];
}
export interface DetectRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/**
 * A region of an image, in coordinates relative to the image size. Each is a
 * finite number: JSON's "NaN" and "Infinity" are refused.
 */
export interface Region {
    /** Center x. */
    cx: number;
    /** Center y. */
    cy: number;
    /** Width. */
    w: number;
    /** Height. */
    h: number;
}
/** A detected object, in coordinates relative to the image size. */
export interface BoundingBox {
    /** Output only. Center x. */
    cx: number;
    /** Output only. Center y. */
    cy: number;
    /** Output only. Width. */
    w: number;
    /** Output only. Height. */
    h: number;
    /** Output only. Label. */
    text: string;
    /** Output only. Score. */
    score: number;
    /** Output only. The object's mask, if the model gives one. */
    mask: DetectionMask | undefined;
}
/** A detected object's segmentation mask. */
export interface DetectionMask {
    /** Output only. The mask, in a format the model defines (base64 in JSON). */
    mask_values: Buffer;
    /** Output only. Its height. */
    mask_height: number;
    /** Output only. Its width. */
    mask_width: number;
}
/** Response of Detect. */
export interface DetectResponse {
    /** Output only. Detected objects. */
    boxes: BoundingBox[];
}
/** Request of ImageToText. */
export interface ImageToTextRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The encoded image (base64 in JSON). */
    image_bytes: Buffer;
    /** An optional prompt. */
    text: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface ImageToTextRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of ImageToText. */
export interface ImageToTextResponse {
    /** Output only. Captions, best first. */
    texts: DecodedText[];
}
/** Request of Recognize. */
export interface RecognizeRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The audio, e.g. a WAV file (base64 in JSON). */
    audio_bytes: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface RecognizeRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of Recognize. */
export interface RecognizeResponse {
    /** Output only. Transcripts, best first. */
    texts: DecodedText[];
}
/** Request of GetStats. */
export interface GetStatsRequest {
    /** Required. A cell ("/sax/test") or a model ID. */
    name: string;
}
/** Model servers of one type. */
export interface ServerTypeStat {
    /** Output only. Chip type, e.g. "CHIP_TYPE_CPU". */
    chip_type: string;
    /** Output only. Chip topology, e.g. "CHIP_TOPOLOGY_1". */
    chip_topology: string;
    /** Output only. Active servers of this type. */
    replicas: number;
}
/** Response of GetStats. */
export interface GetStatsResponse {
    /** Output only. Servers by type. */
    server_types: ServerTypeStat[];
    /** Output only. Model path -> servers able to serve it. */
    servers_by_model_path: {
        [key: string]: number;
    };
}
export interface GetStatsResponse_ServersByModelPathEntry {
    key: string;
    value: number;
}
/** Request of WaitForReady. */
export interface WaitForReadyRequest {
    /** Required. The model ID. */
    model: string;
    /** Replicas to wait for. Defaults to 1. */
    replicas?: number | undefined;
    /** How long to wait; the shorter of this and the gRPC deadline wins. */
    timeout: Duration | undefined;
}
/** Response of WaitForReady. */
export interface WaitForReadyResponse {
    /** Output only. The model ID. */
    model: string;
    /** Output only. Replicas serving when the call returned. */
    active_replicas: number;
}
/** Request of GetAcl. */
export interface GetAclRequest {
    /** Required. A cell ("/sax/test") or a model ID. */
    name: string;
}
/** Response of GetAcl. */
export interface GetAclResponse {
    /** Output only. The cell or model. */
    name: string;
    /** Output only. Its admin ACL; empty means none. */
    acl: string;
    /**
     * Output only. A model's data method ACLs: Sax method name (e.g.
     * "lm.generate") -> ACL. Empty for a cell.
     */
    method_acls: {
        [key: string]: string;
    };
}
export interface GetAclResponse_MethodAclsEntry {
    key: string;
    value: string;
}
/** Request of SetAcl. */
export interface SetAclRequest {
    /** Required. A cell ("/sax/test") or a model ID. */
    name: string;
    /**
     * The new ACL: a group ("acl/NAME") or a client ID, without spaces; empty
     * clears it.
     */
    acl: string;
    /**
     * A data method of the model whose ACL to set instead of its admin ACL, as
     * Sax names it (e.g. "lm.generate", "lm.generate_stream", "vm.classify");
     * empty: the admin ACL. Only for a model.
     */
    method: string;
}
/** Response of SetAcl. */
export interface SetAclResponse {
    /** Output only. The cell or model. */
    name: string;
    /** Output only. Its admin ACL, or with `method` that method's ACL. */
    acl: string;
    /** Output only. The data method whose ACL was set; empty: the admin ACL. */
    method: string;
}
/** Request of WatchAddresses. */
export interface WatchAddressesRequest {
    /** Required. The model ID. */
    model: string;
}
/** One message of WatchAddresses. */
export interface WatchAddressesResponse {
    /** Output only. Addresses serving the model now, sorted. */
    addresses: string[];
    /** Output only. Set on the final message when the watch ended with an error. */
    error: Status | undefined;
}
/** One item of a multimodal input or output. */
export interface MultimodalItem {
    /** Text. */
    text?: string | undefined;
    /** An encoded image (base64 in JSON). */
    image_bytes?: Buffer | undefined;
    /** An encoded video (base64 in JSON). */
    video?: Buffer | undefined;
}
/** Request of MultimodalGenerate. */
export interface MultimodalGenerateRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The prompt's items, in order. */
    items: MultimodalItem[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface MultimodalGenerateRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** One sample of MultimodalGenerate. */
export interface MultimodalSample {
    /** Output only. The generated items. */
    items: MultimodalItem[];
    /** Output only. The sample's score. */
    score: number;
}
/** Response of MultimodalGenerate. */
export interface MultimodalGenerateResponse {
    /** Output only. The samples, as the model ranks them. */
    samples: MultimodalSample[];
}
/** Request of MultimodalScore. */
export interface MultimodalScoreRequest {
    /** Required. The model ID. */
    model: string;
    /** The prefix's items. */
    prefix_items: MultimodalItem[];
    /** Required. The items to score after the prefix. */
    suffix_items: MultimodalItem[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface MultimodalScoreRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of MultimodalScore. */
export interface MultimodalScoreResponse {
    /** Output only. The scores (log-probabilities) the model returned. */
    scores: number[];
}
/** Request of MultimodalEmbed. */
export interface MultimodalEmbedRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The items to embed. */
    items: MultimodalItem[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface MultimodalEmbedRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of MultimodalEmbed. */
export interface MultimodalEmbedResponse {
    /** Output only. The embedding. */
    embedding: number[];
}
/** Request of ImageToImage. */
export interface ImageToImageRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The encoded image (base64 in JSON). */
    image_bytes: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface ImageToImageRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of ImageToImage. */
export interface ImageToImageResponse {
    /** Output only. Images, best first. */
    images: GeneratedImage[];
}
/** Request of TextAndImageToImage. */
export interface TextAndImageToImageRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The prompt. */
    text: string;
    /** Required. The encoded conditioning image (base64 in JSON). */
    image_bytes: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface TextAndImageToImageRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of TextAndImageToImage. */
export interface TextAndImageToImageResponse {
    /** Output only. Images, best first. */
    images: GeneratedImage[];
}
/** Request of VideoToText. */
export interface VideoToTextRequest {
    /** Required. The model ID. */
    model: string;
    /**
     * Required. The video's encoded frames, in order (each base64 in JSON); at
     * most 1024, none of them empty.
     */
    image_frames: Buffer[];
    /** An optional prompt. */
    text: string;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface VideoToTextRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of VideoToText. */
export interface VideoToTextResponse {
    /** Output only. Captions, best first. */
    texts: DecodedText[];
}
/** Request of VideoToToken. */
export interface VideoToTokenRequest {
    /** Required. The model ID. */
    model: string;
    /**
     * Required. The video's encoded frames, in order (each base64 in JSON); at
     * most 1024, none of them empty.
     */
    image_frames: Buffer[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface VideoToTokenRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of VideoToToken. */
export interface VideoToTokenResponse {
    /** Output only. The video's quantized or soft tokens. */
    tokens: number[];
}
/** Request of TokenToVideo. */
export interface TokenToVideoRequest {
    /** Required. The model ID. */
    model: string;
    /**
     * Required. Quantized or soft tokens, as VideoToToken returns them: finite
     * numbers, at most 1048576.
     */
    tokens: number[];
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface TokenToVideoRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of TokenToVideo. */
export interface TokenToVideoResponse {
    /** Output only. The video's encoded frames, in order (each base64 in JSON). */
    image_frames: Buffer[];
}
/** Request of Custom. */
export interface CustomRequest {
    /** Required. The model ID. */
    model: string;
    /** Required. The model's method to call, as the model names it (e.g. "echo"). */
    method_name: string;
    /**
     * The method's input, in a format the model defines (base64 in JSON); may
     * be empty.
     */
    request: Buffer;
    /** Extra inputs, as in GenerateRequest. */
    extra_inputs: {
        [key: string]: any | undefined;
    };
    /** Deadline of the call. */
    timeout: Duration | undefined;
}
export interface CustomRequest_ExtraInputsEntry {
    key: string;
    value: any | undefined;
}
/** Response of Custom. */
export interface CustomResponse {
    /**
     * Output only. The method's output, in a format the model defines (base64 in
     * JSON).
     */
    response: Buffer;
}
export declare const GetInfoRequest: MessageFns<GetInfoRequest>;
export declare const GetInfoResponse: MessageFns<GetInfoResponse>;
export declare const PublishModelRequest: MessageFns<PublishModelRequest>;
export declare const PublishModelRequest_OverridesEntry: MessageFns<PublishModelRequest_OverridesEntry>;
export declare const PublishModelResponse: MessageFns<PublishModelResponse>;
export declare const ListCellRequest: MessageFns<ListCellRequest>;
export declare const ListCellResponse: MessageFns<ListCellResponse>;
export declare const GetModelRequest: MessageFns<GetModelRequest>;
export declare const GetModelResponse: MessageFns<GetModelResponse>;
export declare const ModelInfo: MessageFns<ModelInfo>;
export declare const ModelInfo_OverridesEntry: MessageFns<ModelInfo_OverridesEntry>;
export declare const ModelInfo_MethodAclsEntry: MessageFns<ModelInfo_MethodAclsEntry>;
export declare const ListModelsRequest: MessageFns<ListModelsRequest>;
export declare const ListModelsResponse: MessageFns<ListModelsResponse>;
export declare const ListCellsRequest: MessageFns<ListCellsRequest>;
export declare const ListCellsResponse: MessageFns<ListCellsResponse>;
export declare const UpdateModelRequest: MessageFns<UpdateModelRequest>;
export declare const UpdateModelRequest_OverridesEntry: MessageFns<UpdateModelRequest_OverridesEntry>;
export declare const UpdateModelResponse: MessageFns<UpdateModelResponse>;
export declare const UpdateModelResponse_OverridesEntry: MessageFns<UpdateModelResponse_OverridesEntry>;
export declare const UnpublishModelRequest: MessageFns<UnpublishModelRequest>;
export declare const UnpublishModelResponse: MessageFns<UnpublishModelResponse>;
export declare const GenerateRequest: MessageFns<GenerateRequest>;
export declare const GenerateRequest_ExtraInputsEntry: MessageFns<GenerateRequest_ExtraInputsEntry>;
export declare const DecodedText: MessageFns<DecodedText>;
export declare const GenerateResponse: MessageFns<GenerateResponse>;
export declare const GenerateStreamRequest: MessageFns<GenerateStreamRequest>;
export declare const GenerateStreamRequest_ExtraInputsEntry: MessageFns<GenerateStreamRequest_ExtraInputsEntry>;
export declare const TextDelta: MessageFns<TextDelta>;
export declare const GenerateStreamResponse: MessageFns<GenerateStreamResponse>;
export declare const ScoreRequest: MessageFns<ScoreRequest>;
export declare const ScoreRequest_ExtraInputsEntry: MessageFns<ScoreRequest_ExtraInputsEntry>;
export declare const ScoreResponse: MessageFns<ScoreResponse>;
export declare const EmbedRequest: MessageFns<EmbedRequest>;
export declare const EmbedRequest_ExtraInputsEntry: MessageFns<EmbedRequest_ExtraInputsEntry>;
export declare const EmbedResponse: MessageFns<EmbedResponse>;
export declare const GradientRequest: MessageFns<GradientRequest>;
export declare const GradientRequest_ExtraInputsEntry: MessageFns<GradientRequest_ExtraInputsEntry>;
export declare const GradientValues: MessageFns<GradientValues>;
export declare const GradientResponse: MessageFns<GradientResponse>;
export declare const GradientResponse_GradientsEntry: MessageFns<GradientResponse_GradientsEntry>;
export declare const ClassifyRequest: MessageFns<ClassifyRequest>;
export declare const ClassifyRequest_ExtraInputsEntry: MessageFns<ClassifyRequest_ExtraInputsEntry>;
export declare const ClassifyResponse: MessageFns<ClassifyResponse>;
export declare const TextToImageRequest: MessageFns<TextToImageRequest>;
export declare const TextToImageRequest_ExtraInputsEntry: MessageFns<TextToImageRequest_ExtraInputsEntry>;
export declare const GeneratedImage: MessageFns<GeneratedImage>;
export declare const TextToImageResponse: MessageFns<TextToImageResponse>;
export declare const EmbedImageRequest: MessageFns<EmbedImageRequest>;
export declare const EmbedImageRequest_ExtraInputsEntry: MessageFns<EmbedImageRequest_ExtraInputsEntry>;
export declare const EmbedImageResponse: MessageFns<EmbedImageResponse>;
export declare const DetectRequest: MessageFns<DetectRequest>;
export declare const DetectRequest_ExtraInputsEntry: MessageFns<DetectRequest_ExtraInputsEntry>;
export declare const Region: MessageFns<Region>;
export declare const BoundingBox: MessageFns<BoundingBox>;
export declare const DetectionMask: MessageFns<DetectionMask>;
export declare const DetectResponse: MessageFns<DetectResponse>;
export declare const ImageToTextRequest: MessageFns<ImageToTextRequest>;
export declare const ImageToTextRequest_ExtraInputsEntry: MessageFns<ImageToTextRequest_ExtraInputsEntry>;
export declare const ImageToTextResponse: MessageFns<ImageToTextResponse>;
export declare const RecognizeRequest: MessageFns<RecognizeRequest>;
export declare const RecognizeRequest_ExtraInputsEntry: MessageFns<RecognizeRequest_ExtraInputsEntry>;
export declare const RecognizeResponse: MessageFns<RecognizeResponse>;
export declare const GetStatsRequest: MessageFns<GetStatsRequest>;
export declare const ServerTypeStat: MessageFns<ServerTypeStat>;
export declare const GetStatsResponse: MessageFns<GetStatsResponse>;
export declare const GetStatsResponse_ServersByModelPathEntry: MessageFns<GetStatsResponse_ServersByModelPathEntry>;
export declare const WaitForReadyRequest: MessageFns<WaitForReadyRequest>;
export declare const WaitForReadyResponse: MessageFns<WaitForReadyResponse>;
export declare const GetAclRequest: MessageFns<GetAclRequest>;
export declare const GetAclResponse: MessageFns<GetAclResponse>;
export declare const GetAclResponse_MethodAclsEntry: MessageFns<GetAclResponse_MethodAclsEntry>;
export declare const SetAclRequest: MessageFns<SetAclRequest>;
export declare const SetAclResponse: MessageFns<SetAclResponse>;
export declare const WatchAddressesRequest: MessageFns<WatchAddressesRequest>;
export declare const WatchAddressesResponse: MessageFns<WatchAddressesResponse>;
export declare const MultimodalItem: MessageFns<MultimodalItem>;
export declare const MultimodalGenerateRequest: MessageFns<MultimodalGenerateRequest>;
export declare const MultimodalGenerateRequest_ExtraInputsEntry: MessageFns<MultimodalGenerateRequest_ExtraInputsEntry>;
export declare const MultimodalSample: MessageFns<MultimodalSample>;
export declare const MultimodalGenerateResponse: MessageFns<MultimodalGenerateResponse>;
export declare const MultimodalScoreRequest: MessageFns<MultimodalScoreRequest>;
export declare const MultimodalScoreRequest_ExtraInputsEntry: MessageFns<MultimodalScoreRequest_ExtraInputsEntry>;
export declare const MultimodalScoreResponse: MessageFns<MultimodalScoreResponse>;
export declare const MultimodalEmbedRequest: MessageFns<MultimodalEmbedRequest>;
export declare const MultimodalEmbedRequest_ExtraInputsEntry: MessageFns<MultimodalEmbedRequest_ExtraInputsEntry>;
export declare const MultimodalEmbedResponse: MessageFns<MultimodalEmbedResponse>;
export declare const ImageToImageRequest: MessageFns<ImageToImageRequest>;
export declare const ImageToImageRequest_ExtraInputsEntry: MessageFns<ImageToImageRequest_ExtraInputsEntry>;
export declare const ImageToImageResponse: MessageFns<ImageToImageResponse>;
export declare const TextAndImageToImageRequest: MessageFns<TextAndImageToImageRequest>;
export declare const TextAndImageToImageRequest_ExtraInputsEntry: MessageFns<TextAndImageToImageRequest_ExtraInputsEntry>;
export declare const TextAndImageToImageResponse: MessageFns<TextAndImageToImageResponse>;
export declare const VideoToTextRequest: MessageFns<VideoToTextRequest>;
export declare const VideoToTextRequest_ExtraInputsEntry: MessageFns<VideoToTextRequest_ExtraInputsEntry>;
export declare const VideoToTextResponse: MessageFns<VideoToTextResponse>;
export declare const VideoToTokenRequest: MessageFns<VideoToTokenRequest>;
export declare const VideoToTokenRequest_ExtraInputsEntry: MessageFns<VideoToTokenRequest_ExtraInputsEntry>;
export declare const VideoToTokenResponse: MessageFns<VideoToTokenResponse>;
export declare const TokenToVideoRequest: MessageFns<TokenToVideoRequest>;
export declare const TokenToVideoRequest_ExtraInputsEntry: MessageFns<TokenToVideoRequest_ExtraInputsEntry>;
export declare const TokenToVideoResponse: MessageFns<TokenToVideoResponse>;
export declare const CustomRequest: MessageFns<CustomRequest>;
export declare const CustomRequest_ExtraInputsEntry: MessageFns<CustomRequest_ExtraInputsEntry>;
export declare const CustomResponse: MessageFns<CustomResponse>;
/**
 * SaxGateway reaches the models of a Saxml (Sax) cell over gRPC, and over
 * HTTP/JSON through Envoy's transcoder.
 *
 * Models are named by their Sax model ID, "/sax/<cell>/<name>". In request
 * bodies the leading "/" is optional; in resource-style paths it is left out
 * (`/v1/sax/test/lm2b:generate`), and a body sent to such a path may name
 * that model too (with or without the slash), but no other one.
 *
 * Every RPC honours the caller's deadline (`grpc-timeout`, or the `timeout`
 * field where present) up to the gateway's default timeout (`--default-timeout`,
 * 60 s; a stream's: the stream timeout, 600 s), which also applies when the caller
 * sets none: a longer deadline ends there, with DEADLINE_EXCEEDED. Failures
 * carry a canonical status code: INVALID_ARGUMENT for bad input (with a
 * google.rpc.BadRequest naming the field where the gateway checks it; what a
 * model server refuses, such as an extra input or override it does not take,
 * carries the server's message only, as on any Sax cell), NOT_FOUND for
 * unknown models, ALREADY_EXISTS for duplicate publishes, UNAVAILABLE when the
 * cell cannot be reached, DEADLINE_EXCEEDED when the deadline expires first.
 */
export type SaxGatewayDefinition = typeof SaxGatewayDefinition;
export declare const SaxGatewayDefinition: {
    readonly name: "SaxGateway";
    readonly fullName: "saxgateway.v1.SaxGateway";
    readonly methods: {
        /** Returns a greeting and the gateway's version. Never fails. */
        readonly getInfo: {
            readonly name: "GetInfo";
            readonly requestType: typeof GetInfoRequest;
            readonly requestStream: false;
            readonly responseType: typeof GetInfoResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Publishes a model on the requested number of replicas and returns its
         * definition. Does not wait for the replicas to load.
         * Returns INVALID_ARGUMENT for a malformed model ID or path, ALREADY_EXISTS
         * if the model is already published. A model unpublished a moment ago may
         * be published again at once on the embedded cell; an upstream admin answers
         * "being unpublished, please retry later" (UNAVAILABLE) until its servers
         * have unloaded it, which the gateway retries until the call's deadline.
         */
        readonly publishModel: {
            readonly name: "PublishModel";
            readonly requestType: typeof PublishModelRequest;
            readonly requestStream: false;
            readonly responseType: typeof PublishModelResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the definition and replica counts of one published model, in the
         * shape of the original Sax HTTP server's `/listcell`.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly listCell: {
            readonly name: "ListCell";
            readonly requestType: typeof ListCellRequest;
            readonly requestStream: false;
            readonly responseType: typeof ListCellResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns everything known about one published model: definition, serving
         * addresses and supported methods. Returns NOT_FOUND if it is not published.
         */
        readonly getModel: {
            readonly name: "GetModel";
            readonly requestType: typeof GetModelRequest;
            readonly requestStream: false;
            readonly responseType: typeof GetModelResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the models published in one cell, sorted by model ID, all of them
         * or a page at a time (`page_size`, `page_token`).
         * Returns NOT_FOUND if the cell does not exist, INVALID_ARGUMENT for a
         * negative page size or a page token that is no model ID of the cell (a
         * page's token is the ID of its last model: the next page starts after it).
         */
        readonly listModels: {
            readonly name: "ListModels";
            readonly requestType: typeof ListModelsRequest;
            readonly requestStream: false;
            readonly responseType: typeof ListModelsResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /** Returns the cells under the gateway's SAX_ROOT. */
        readonly listCells: {
            readonly name: "ListCells";
            readonly requestType: typeof ListCellsRequest;
            readonly requestStream: false;
            readonly responseType: typeof ListCellsResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Changes a published model (checkpoint, replicas, overrides; not its path,
         * which Sax refuses: FAILED_PRECONDITION) and returns its new definition.
         * Fields left unset keep their value.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly updateModel: {
            readonly name: "UpdateModel";
            readonly requestType: typeof UpdateModelRequest;
            readonly requestStream: false;
            readonly responseType: typeof UpdateModelResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /** Stops serving a model. Returns NOT_FOUND if it is not published. */
        readonly unpublishModel: {
            readonly name: "UnpublishModel";
            readonly requestType: typeof UnpublishModelRequest;
            readonly requestStream: false;
            readonly responseType: typeof UnpublishModelResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Generates continuations of a prompt with a language model. A model
         * published moments ago is waited for within the deadline.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for a
         * bad extra input, RESOURCE_EXHAUSTED (with retry-after) if its replicas
         * stayed overloaded through the gateway's retries (`--overloaded-after`,
         * 1 s), DEADLINE_EXCEEDED if no replica answered in time.
         */
        readonly generate: {
            readonly name: "Generate";
            readonly requestType: typeof GenerateRequest;
            readonly requestStream: false;
            readonly responseType: typeof GenerateResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Streams the generation of continuations: one message per decoding step
         * with each sample's new text, then a final message with the complete
         * texts and scores, or with the error that ended the stream. Over HTTP the
         * messages are Server-Sent Events.
         * Fails without messages (and so with an HTTP status) for errors found
         * before decoding starts; see Generate. A stream still waiting for its
         * first token after `--stream-keepalive` (10 s) sends its headers (its
         * HTTP 200) first, and then ends with the error message instead, as a
         * stream that has begun. Without a deadline a stream may
         * last the gateway's stream timeout (600 s), but UNAVAILABLE from
         * unreachable replicas, and DEADLINE_EXCEEDED when no replica serves the
         * model, are returned when a unary call would return them (the gateway's
         * default timeout), and RESOURCE_EXHAUSTED from overloaded replicas as a
         * unary call gets it (after `--overloaded-after`, 1 s).
         */
        readonly generateStream: {
            readonly name: "GenerateStream";
            readonly requestType: typeof GenerateStreamRequest;
            readonly requestStream: false;
            readonly responseType: typeof GenerateStreamResponse;
            readonly responseStream: true;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the log-probability of each suffix after a prefix.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly score: {
            readonly name: "Score";
            readonly requestType: typeof ScoreRequest;
            readonly requestStream: false;
            readonly responseType: typeof ScoreResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns a language model's embedding of a text.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly embed: {
            readonly name: "Embed";
            readonly requestType: typeof EmbedRequest;
            readonly requestStream: false;
            readonly responseType: typeof EmbedResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the score of a suffix after a prefix and its gradients.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly gradient: {
            readonly name: "Gradient";
            readonly requestType: typeof GradientRequest;
            readonly requestStream: false;
            readonly responseType: typeof GradientResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the labels a vision model assigns to an image, best first.
         * Returns INVALID_ARGUMENT for an empty image.
         */
        readonly classify: {
            readonly name: "Classify";
            readonly requestType: typeof ClassifyRequest;
            readonly requestStream: false;
            readonly responseType: typeof ClassifyResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns images generated from a text.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly textToImage: {
            readonly name: "TextToImage";
            readonly requestType: typeof TextToImageRequest;
            readonly requestStream: false;
            readonly responseType: typeof TextToImageResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns a vision model's embedding of an image.
         * Returns INVALID_ARGUMENT for an empty image.
         */
        readonly embedImage: {
            readonly name: "EmbedImage";
            readonly requestType: typeof EmbedImageRequest;
            readonly requestStream: false;
            readonly responseType: typeof EmbedImageResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the objects detected in an image (in its boxes of interest, if
         * the request gives some), with their masks if the model gives them.
         * Returns INVALID_ARGUMENT for an empty image.
         */
        readonly detect: {
            readonly name: "Detect";
            readonly requestType: typeof DetectRequest;
            readonly requestStream: false;
            readonly responseType: typeof DetectResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns captions of an image, best first.
         * Returns INVALID_ARGUMENT for an empty image.
         */
        readonly imageToText: {
            readonly name: "ImageToText";
            readonly requestType: typeof ImageToTextRequest;
            readonly requestStream: false;
            readonly responseType: typeof ImageToTextResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns transcripts of speech, best first.
         * Returns INVALID_ARGUMENT for empty audio.
         */
        readonly recognize: {
            readonly name: "Recognize";
            readonly requestType: typeof RecognizeRequest;
            readonly requestStream: false;
            readonly responseType: typeof RecognizeResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns how many model servers of each type serve a cell or a model.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly getStats: {
            readonly name: "GetStats";
            readonly requestType: typeof GetStatsRequest;
            readonly requestStream: false;
            readonly responseType: typeof GetStatsResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns once a model has the requested number of ready replicas.
         * Returns DEADLINE_EXCEEDED if that does not happen within the deadline,
         * FAILED_PRECONDITION with the load error once every model server the model
         * was assigned to failed to load it (the embedded cell reports that), and
         * NOT_FOUND if the model is not published, or is unpublished while the call
         * waits.
         */
        readonly waitForReady: {
            readonly name: "WaitForReady";
            readonly requestType: typeof WaitForReadyRequest;
            readonly requestStream: false;
            readonly responseType: typeof WaitForReadyResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the admin ACL of a cell or a model, and a model's data method ACLs.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly getAcl: {
            readonly name: "GetAcl";
            readonly requestType: typeof GetAclRequest;
            readonly requestStream: false;
            readonly responseType: typeof GetAclResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Sets the admin ACL of a cell or a model, or the ACL of one of a model's data
         * methods (`method`), and returns it. Returns NOT_FOUND if the model is not
         * published, and INVALID_ARGUMENT for a method Sax has no ACL for or a method
         * on a cell.
         */
        readonly setAcl: {
            readonly name: "SetAcl";
            readonly requestType: typeof SetAclRequest;
            readonly requestStream: false;
            readonly responseType: typeof SetAclResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Streams the set of addresses serving a model: the current set first, then
         * the new set whenever it changes. Returns NOT_FOUND if the model is not
         * published (or, in-band, once it is unpublished). Runs until the caller
         * leaves or its deadline (`grpc-timeout`), which ends it with an in-band
         * DEADLINE_EXCEEDED.
         */
        readonly watchAddresses: {
            readonly name: "WatchAddresses";
            readonly requestType: typeof WatchAddressesRequest;
            readonly requestStream: false;
            readonly responseType: typeof WatchAddressesResponse;
            readonly responseStream: true;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the samples a multimodal model continues the items with.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT if it
         * has no multimodal methods.
         */
        readonly multimodalGenerate: {
            readonly name: "MultimodalGenerate";
            readonly requestType: typeof MultimodalGenerateRequest;
            readonly requestStream: false;
            readonly responseType: typeof MultimodalGenerateResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the score of suffix items after prefix items.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly multimodalScore: {
            readonly name: "MultimodalScore";
            readonly requestType: typeof MultimodalScoreRequest;
            readonly requestStream: false;
            readonly responseType: typeof MultimodalScoreResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns a multimodal model's embedding of the items.
         * Returns NOT_FOUND if the model is not published.
         */
        readonly multimodalEmbed: {
            readonly name: "MultimodalEmbed";
            readonly requestType: typeof MultimodalEmbedRequest;
            readonly requestStream: false;
            readonly responseType: typeof MultimodalEmbedResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns images a vision model makes from an image, best first.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for an
         * empty image or a model that does not serve vm.image_to_image.
         */
        readonly imageToImage: {
            readonly name: "ImageToImage";
            readonly requestType: typeof ImageToImageRequest;
            readonly requestStream: false;
            readonly responseType: typeof ImageToImageResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns images a vision model makes from a text and a conditioning image,
         * best first.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for an
         * empty text or image or a model that does not serve
         * vm.text_and_image_to_image.
         */
        readonly textAndImageToImage: {
            readonly name: "TextAndImageToImage";
            readonly requestType: typeof TextAndImageToImageRequest;
            readonly requestStream: false;
            readonly responseType: typeof TextAndImageToImageResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns captions of a video given as its encoded frames, best first.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for no
         * frames, an empty frame or a model that does not serve vm.video_to_text.
         */
        readonly videoToText: {
            readonly name: "VideoToText";
            readonly requestType: typeof VideoToTextRequest;
            readonly requestStream: false;
            readonly responseType: typeof VideoToTextResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the tokens of a video given as its encoded frames: a video
         * tokenizer's quantized or soft tokens, flattened in the model's order.
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for no
         * frames, an empty frame or a model that does not serve vm.video_to_token.
         */
        readonly videoToToken: {
            readonly name: "VideoToToken";
            readonly requestType: typeof VideoToTokenRequest;
            readonly requestStream: false;
            readonly responseType: typeof VideoToTokenResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Returns the encoded frames of the video that tokens describe (the inverse
         * of VideoToToken).
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for no
         * tokens, a token that is not a finite number or a model that does not
         * serve vm.token_to_video.
         */
        readonly tokenToVideo: {
            readonly name: "TokenToVideo";
            readonly requestType: typeof TokenToVideoRequest;
            readonly requestStream: false;
            readonly responseType: typeof TokenToVideoResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
        /**
         * Calls a method a custom model defines, with opaque bytes in and out; its
         * ACL is the ACL of that method (the model's own name for it).
         * Returns NOT_FOUND if the model is not published, INVALID_ARGUMENT for an
         * empty method name, one the model does not define, or a method of Sax's
         * own services (lm.generate, vm.classify, ...), which only their own RPCs
         * reach.
         */
        readonly custom: {
            readonly name: "Custom";
            readonly requestType: typeof CustomRequest;
            readonly requestStream: false;
            readonly responseType: typeof CustomResponse;
            readonly responseStream: false;
            readonly options: {
                readonly _unknownFields: {
                    readonly 578365826: readonly [Buffer<ArrayBufferLike>];
                };
            };
        };
    };
};
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
export type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
export type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
export interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    fromJSON(object: any): T;
    toJSON(message: T): unknown;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
