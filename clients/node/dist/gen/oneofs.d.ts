export interface OneofMessage {
    /** Each oneof's member fields. */
    oneofs: Record<string, string[]>;
    /** The fields whose messages hold oneofs: singular, repeated, or map values. */
    fields: Record<string, {
        how: "single" | "repeated" | "map";
        type: string;
    }>;
}
/** The request type of each RPC whose request holds a oneof, by RPC name. */
export declare const REQUESTS: Record<string, string>;
/** The messages on the way to a oneof, by full name. */
export declare const MESSAGES: Record<string, OneofMessage>;
