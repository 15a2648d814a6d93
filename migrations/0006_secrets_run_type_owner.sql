CREATE TABLE `secrets` (
	`scope` text NOT NULL,
	`name` text NOT NULL,
	`ciphertext` text NOT NULL,
	`iv` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`scope`, `name`)
);
--> statement-breakpoint
ALTER TABLE `run_types` ADD `owner` text;--> statement-breakpoint
CREATE INDEX `run_types_owner` ON `run_types` (`owner`,`name`);