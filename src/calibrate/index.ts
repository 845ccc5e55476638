export { calibrate, crossValidate, accuracyOf, checkEnoughRows, readInputs, baseDevice, resolveRows, summarizeRejections, MIN_PLANS } from './calibrate.js';
export { fitProfile, setupFit } from './fit.js';
export { mape, kendallTau } from './metrics.js';
export { benchRowsFromCsv, benchRowsFromJson, readBenchFile } from './bench.js';
export { traceToRow, readTraceFile, type Trace, type TraceEvent } from './trace.js';
export { resolveRow, newContext, type RawRow } from './resolve.js';
export type * from './types.js';
export { validateRows, compareRow, groupRowsByDevice, summarizeErrors, summarizeFamilies, type RowComparison, type ErrorSummary, type FamilySummary, type ValidationReport, type DeviceGroup } from './validate.js';
