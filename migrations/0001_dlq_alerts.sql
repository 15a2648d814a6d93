CREATE TABLE `alerts` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`severity` text NOT NULL,
	`customer_id` text,
	`run_id` text,
	`dlq_id` text,
	`message` text NOT NULL,
	`details` text DEFAULT '{}' NOT NULL,
	`created_at` integer NOT NULL,
	`delivery_status` text NOT NULL,
	`delivery_attempts` integer DEFAULT 0 NOT NULL,
	`last_delivery_error` text
);
--> statement-breakpoint
CREATE INDEX `alerts_created` ON `alerts` (`created_at`);--> statement-breakpoint
CREATE INDEX `alerts_kind_created` ON `alerts` (`kind`,`created_at`);--> statement-breakpoint
ALTER TABLE `runs` ADD `checked_at` integer;