// The edge where plans leave mesh-search: engine configurations and the HTML report.
export { exportPlan, isFormat } from './exportPlan.js';
export { FORMATS, UnsupportedPlanError, type ExportInput, type ExportOutput, type Format } from './target.js';
export { writeReport, renderReport, type ReportOptions } from './report/report.js';
export { parseSearchResult, type SearchResult } from './report/result.js';
