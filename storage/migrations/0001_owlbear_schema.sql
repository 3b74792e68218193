-- One table per beast. IF NOT EXISTS so a database the original
-- intro-to-mltp server already initialised is adopted as it is.
CREATE TABLE IF NOT EXISTS unicorn (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS manticore (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS illithid (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS owlbear (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS beholder (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL);
