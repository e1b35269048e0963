// Bundled in place of cosmiconfig (scripts/bundle.js). graphile-worker, when it is
// loaded, searches the working directory and every folder above it for a config
// file (.graphile-workerrc*, graphile-worker.config.*, a "graphile-worker" key in
// package.json), which can only set options that dbsync passes itself (schema,
// pollInterval, concurrentJobs, maxPoolSize). The search cost every sidecar start the
// loading of cosmiconfig and its parsers, and a .graphile-workerrc.js found above the
// working directory would have been run. This module finds no config, always.
const none = { search: () => null, load: () => null, clearLoadCache() {}, clearSearchCache() {}, clearCaches() {} };
exports.cosmiconfigSync = () => none;
