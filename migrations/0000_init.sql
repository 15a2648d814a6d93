CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`key_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer,
	FOREIGN KEY (`customer_id`) REFERENCES `customers`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash` ON `api_keys` (`key_hash`);--> statement-breakpoint
CREATE INDEX `api_keys_customer` ON `api_keys` (`customer_id`);--> statement-breakpoint
CREATE TABLE `customers` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`plan` text DEFAULT '{}' NOT NULL,
	`budget_limit_nano_usd` text,
	`budget_soft_thresholds` text DEFAULT '[]' NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `dlq_entries` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`customer_id` text,
	`run_type` text,
	`pool` text NOT NULL,
	`step` text,
	`failure_type` text NOT NULL,
	`failure_message` text NOT NULL,
	`attempts` integer NOT NULL,
	`history` text NOT NULL,
	`message` text NOT NULL,
	`dead_at` integer NOT NULL,
	`state` text DEFAULT 'open' NOT NULL
);
--> statement-breakpoint
CREATE INDEX `dlq_entries_dead` ON `dlq_entries` (`state`,`dead_at`);--> statement-breakpoint
CREATE INDEX `dlq_entries_run` ON `dlq_entries` (`run_id`);--> statement-breakpoint
CREATE TABLE `run_types` (
	`name` text PRIMARY KEY NOT NULL,
	`definition` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `runs` (
	`id` text PRIMARY KEY NOT NULL,
	`customer_id` text NOT NULL,
	`project_id` text NOT NULL,
	`run_type` text,
	`pool` text NOT NULL,
	`priority` text NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer,
	`duration_ms` integer,
	`failure_type` text,
	`failed_step` text,
	`idempotency_key` text,
	`version` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `runs_customer_created` ON `runs` (`customer_id`,`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `runs_created` ON `runs` (`created_at`,`id`);--> statement-breakpoint
CREATE INDEX `runs_status_created` ON `runs` (`status`,`created_at`);--> statement-breakpoint
CREATE TABLE `step_attempts` (
	`run_id` text NOT NULL,
	`step_index` integer NOT NULL,
	`attempt` integer NOT NULL,
	`step` text NOT NULL,
	`step_type` text NOT NULL,
	`customer_id` text NOT NULL,
	`project_id` text NOT NULL,
	`run_type` text,
	`pool` text NOT NULL,
	`status` text NOT NULL,
	`failure_type` text,
	`failure_message` text,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`duration_ms` integer,
	PRIMARY KEY(`run_id`, `step_index`, `attempt`)
);
--> statement-breakpoint
CREATE INDEX `step_attempts_started` ON `step_attempts` (`started_at`);