// The search's public face: `report` and `tune` call search(); tests and the bench use exhaustive().
export { search, planFromCandidate, type SearchOptions, type SearchResult, type Progress } from './search.js';
export { exhaustive } from './exhaustive.js';
export { SearchFailed, MESSAGES } from './pool.js';
export type { Objective, PlanFilter } from './protocol.js';
export { engineProfile, planFilter, pricingProfile } from './filter.js';
export { makeSpace, conflicts, interchangeable, type PlanSpace } from './space.js';
export { searchDevices, finestMesh, coarsen, allowedMesh, type DeviceSearchOptions, type DeviceSearchResult } from './devices.js';
