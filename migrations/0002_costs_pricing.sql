CREATE TABLE `cost_events` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`project_id` text NOT NULL,
	`run_id` text NOT NULL,
	`run_type` text,
	`pool` text NOT NULL,
	`step` text,
	`attempt` integer,
	`meter` text NOT NULL,
	`model` text,
	`quantity` integer NOT NULL,
	`per_million` text NOT NULL,
	`nano_usd` integer NOT NULL,
	`price_version` text NOT NULL,
	`estimated` integer DEFAULT 0 NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `cost_events_customer_at` ON `cost_events` (`customer_id`,`at`);--> statement-breakpoint
CREATE INDEX `cost_events_at` ON `cost_events` (`at`);--> statement-breakpoint
CREATE TABLE `infra_prices` (
	`meter` text NOT NULL,
	`version` text NOT NULL,
	`effective_from` integer NOT NULL,
	`per_million` text NOT NULL,
	PRIMARY KEY(`meter`, `version`)
);
--> statement-breakpoint
CREATE TABLE `model_prices` (
	`model` text NOT NULL,
	`version` text NOT NULL,
	`effective_from` integer NOT NULL,
	`input` text NOT NULL,
	`output` text NOT NULL,
	`cached_input` text,
	`reasoning` text,
	PRIMARY KEY(`model`, `version`)
);
--> statement-breakpoint
CREATE TABLE `price_versions` (
	`version` text PRIMARY KEY NOT NULL,
	`effective_from` integer NOT NULL,
	`created_at` integer NOT NULL,
	`note` text
);
--> statement-breakpoint
-- ---- Seeded default prices (hand-written; INSERT OR IGNORE so re-applying changes nothing) ----
-- Infrastructure: DEFAULT_INFRA_USD_PER_MILLION (src/domain/pricing.ts, Cloudflare Workers Paid,
-- November 2026) as exact nano-USD per million units. test/integration/pricing.test.ts checks
-- these rows against that constant.
INSERT OR IGNORE INTO `price_versions` (`version`, `effective_from`, `created_at`, `note`) VALUES
	('cloudflare-2026-11', 0, 0, 'Cloudflare Workers Paid unit prices, November 2026 (seeded by migration 0002)'),
	('defaults-2026-11', 0, 0, 'Model token prices, November 2026 (seeded by migration 0002)');
--> statement-breakpoint
INSERT OR IGNORE INTO `infra_prices` (`meter`, `version`, `effective_from`, `per_million`) VALUES
	('worker_requests', 'cloudflare-2026-11', 0, '300000000'),
	('worker_cpu_ms', 'cloudflare-2026-11', 0, '20000000'),
	('do_requests', 'cloudflare-2026-11', 0, '150000000'),
	('do_duration_ms', 'cloudflare-2026-11', 0, '1562500000'),
	('do_rows_read', 'cloudflare-2026-11', 0, '1000000'),
	('do_rows_written', 'cloudflare-2026-11', 0, '1000000000'),
	('queue_operations', 'cloudflare-2026-11', 0, '400000000'),
	('d1_rows_read', 'cloudflare-2026-11', 0, '1000000'),
	('d1_rows_written', 'cloudflare-2026-11', 0, '1000000000');
--> statement-breakpoint
-- Models, nano-USD per million tokens: input, output, cached input (reasoning: billed at output).
INSERT OR IGNORE INTO `model_prices` (`model`, `version`, `effective_from`, `input`, `output`, `cached_input`, `reasoning`) VALUES
	('gpt-4o-mini', 'defaults-2026-11', 0, '150000000', '600000000', '75000000', NULL),
	('gpt-4o', 'defaults-2026-11', 0, '2500000000', '10000000000', '1250000000', NULL),
	('claude-sonnet-4', 'defaults-2026-11', 0, '3000000000', '15000000000', '300000000', NULL);
