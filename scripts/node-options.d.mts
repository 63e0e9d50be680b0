export declare const SERVICE_NODE_OPTIONS: string;
export declare function withServiceNodeOptions(current: string | undefined): string;
