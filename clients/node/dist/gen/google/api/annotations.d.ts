export declare const protobufPackage = "google.api";
export declare const protobufFileName = "google/api/annotations.proto";
