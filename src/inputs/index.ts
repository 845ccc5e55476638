// Where every input enters: files, numbers and flags, models, meshes, devices and plans. A leaf
// below runtime, calibrate, export and cli; it imports only the shared types and cost's profile.
export * from './files.js';
export * from './numbers.js';
export * from './load.js';
