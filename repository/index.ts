/** Snapshot repository: content-defined chunking, a deduplicating chunk store, verified manifests. */
export * from "./chunker";
export * from "./chunks";
export * from "./lock";
export * from "./manifest";
export * from "./repository";
export * from "./check";
export * from "./space";
export * from "./staleMarkers";
export * from "./vmWriterLock";
