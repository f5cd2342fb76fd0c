// Made by `make openapi` from docs/openapi.json: edit that file, not this one.

/// The admin API v2 document served at `/v2/openapi.json`.
enum AdminOpenAPI {
    static let document = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "Chime admin API",
    "version": "2",
    "description": "The admin port of `chime serve`: reads and writes over the broker. Every write is a POST or DELETE with `Authorization: Bearer <token>`; tokens have scopes (read < publish < admin), optionally limited to topic patterns. Errors are `{\"error\":{\"code\":...,\"message\":...}}`. Times go out as ms since the epoch and as ISO-8601 (`...ISO`)."
  },
  "servers": [
    {
      "url": "http://127.0.0.1:7421"
    }
  ],
  "security": [
    {
      "bearer": []
    }
  ],
  "components": {
    "securitySchemes": {
      "bearer": {
        "type": "http",
        "scheme": "bearer"
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": [
          "error"
        ],
        "properties": {
          "error": {
            "type": "object",
            "required": [
              "code",
              "message"
            ],
            "properties": {
              "code": {
                "type": "string",
                "description": "Stable name of the error (`unknownTopic`, `forbidden`, `badJSON`, ...)."
              },
              "message": {
                "type": "string"
              }
            }
          }
        }
      },
      "TopicSummary": {
        "type": "object",
        "required": [
          "name",
          "id",
          "partitions",
          "ready",
          "scheduled",
          "nextDueAt",
          "nextDueAtISO",
          "diskBytes"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "id": {
            "type": "integer"
          },
          "partitions": {
            "type": "integer"
          },
          "ready": {
            "type": "integer",
            "description": "Messages kept in its ready logs."
          },
          "scheduled": {
            "type": "integer",
            "description": "Scheduled messages pending."
          },
          "nextDueAt": {
            "type": [
              "integer",
              "null"
            ]
          },
          "nextDueAtISO": {
            "type": [
              "string",
              "null"
            ],
            "description": "The same time as ISO-8601 (UTC, milliseconds)."
          },
          "diskBytes": {
            "type": "integer"
          }
        }
      },
      "Topic": {
        "type": "object",
        "required": [
          "name",
          "id",
          "settings",
          "wheel",
          "ready",
          "scheduled",
          "nextDueAt",
          "nextDueAtISO",
          "diskBytes",
          "partitions"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "id": {
            "type": "integer"
          },
          "settings": {
            "type": "object",
            "required": [
              "partitions",
              "retentionMilliseconds",
              "retentionBytes",
              "maxMessageBytes",
              "maxAttempts",
              "dedupWindowMilliseconds"
            ],
            "properties": {
              "partitions": {
                "type": "integer"
              },
              "retentionMilliseconds": {
                "type": [
                  "integer",
                  "null"
                ]
              },
              "retentionBytes": {
                "type": [
                  "integer",
                  "null"
                ]
              },
              "maxMessageBytes": {
                "type": "integer"
              },
              "maxAttempts": {
                "type": "integer"
              },
              "dedupWindowMilliseconds": {
                "type": "integer"
              }
            }
          },
          "wheel": {
            "type": "string",
            "description": "The timing wheel's geometry."
          },
          "ready": {
            "type": "integer"
          },
          "scheduled": {
            "type": "integer"
          },
          "nextDueAt": {
            "type": [
              "integer",
              "null"
            ]
          },
          "nextDueAtISO": {
            "type": [
              "string",
              "null"
            ],
            "description": "The same time as ISO-8601 (UTC, milliseconds)."
          },
          "diskBytes": {
            "type": "integer"
          },
          "partitions": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "partition",
                "readyStart",
                "logEnd",
                "ready",
                "readyBytes",
                "scheduled",
                "nextDueAt",
                "timerBytes"
              ],
              "properties": {
                "partition": {
                  "type": "integer"
                },
                "readyStart": {
                  "type": "integer"
                },
                "logEnd": {
                  "type": "integer"
                },
                "ready": {
                  "type": "integer"
                },
                "readyBytes": {
                  "type": "integer"
                },
                "scheduled": {
                  "type": "integer"
                },
                "nextDueAt": {
                  "type": [
                    "integer",
                    "null"
                  ]
                },
                "nextDueAtISO": {
                  "type": [
                    "string",
                    "null"
                  ],
                  "description": "The same time as ISO-8601 (UTC, milliseconds)."
                },
                "timerBytes": {
                  "type": "integer"
                }
              }
            }
          }
        }
      },
      "TopicPage": {
        "type": "object",
        "required": [
          "topics",
          "next"
        ],
        "properties": {
          "topics": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/TopicSummary"
            }
          },
          "next": {
            "type": "string",
            "description": "Cursor of the next page; empty on the last."
          }
        }
      },
      "NewTopic": {
        "type": "object",
        "required": [
          "name"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "partitions": {
            "type": "integer"
          },
          "retentionMs": {
            "type": "integer"
          },
          "retentionBytes": {
            "type": "integer"
          },
          "maxMessageBytes": {
            "type": "integer"
          },
          "maxAttempts": {
            "type": "integer"
          },
          "dedupWindowMs": {
            "type": "integer"
          }
        }
      },
      "Message": {
        "type": "object",
        "required": [
          "id",
          "topic",
          "partition",
          "offset",
          "key",
          "keyBase64",
          "headers",
          "body",
          "bodyBase64",
          "bodyBytes",
          "publishedAt",
          "publishedAtISO",
          "attempts"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "topic": {
            "type": "string"
          },
          "partition": {
            "type": "integer"
          },
          "offset": {
            "type": "integer"
          },
          "key": {
            "type": [
              "string",
              "null"
            ]
          },
          "keyBase64": {
            "type": [
              "string",
              "null"
            ]
          },
          "headers": {
            "type": "object",
            "additionalProperties": {
              "type": [
                "string",
                "null"
              ]
            }
          },
          "body": {
            "type": [
              "string",
              "null"
            ],
            "description": "The body as text; null when it is not UTF-8 (see bodyBase64)."
          },
          "bodyBase64": {
            "type": "string"
          },
          "bodyBytes": {
            "type": "integer"
          },
          "publishedAt": {
            "type": "integer"
          },
          "publishedAtISO": {
            "type": [
              "string",
              "null"
            ],
            "description": "The same time as ISO-8601 (UTC, milliseconds)."
          },
          "attempts": {
            "type": "integer"
          }
        }
      },
      "MessagePage": {
        "type": "object",
        "required": [
          "messages",
          "nextFrom"
        ],
        "properties": {
          "messages": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Message"
            }
          },
          "nextFrom": {
            "type": [
              "integer",
              "null"
            ]
          }
        }
      },
      "NewMessage": {
        "type": "object",
        "description": "A body as text or as base64 (one of them); due now, after delayMs, or at a time.",
        "properties": {
          "body": {
            "type": "string"
          },
          "bodyBase64": {
            "type": "string"
          },
          "key": {
            "type": "string"
          },
          "headers": {
            "type": "object",
            "additionalProperties": {
              "type": "string"
            }
          },
          "delayMs": {
            "type": "integer",
            "minimum": 0
          },
          "at": {
            "type": [
              "integer",
              "string"
            ],
            "description": "ms since the epoch, or ISO-8601."
          },
          "dedupKey": {
            "type": "string"
          },
          "partition": {
            "type": "integer",
            "minimum": 0
          }
        }
      },
      "Published": {
        "type": "object",
        "required": [
          "id",
          "partition",
          "duplicate"
        ],
        "properties": {
          "id": {
            "type": [
              "string",
              "null"
            ]
          },
          "partition": {
            "type": "integer"
          },
          "duplicate": {
            "type": "boolean"
          }
        }
      },
      "JobStatuses": {
        "type": "object",
        "required": [
          "id",
          "statuses"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "statuses": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "group",
                "state"
              ],
              "properties": {
                "group": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "state": {
                  "type": "string",
                  "enum": [
                    "scheduled",
                    "ready",
                    "running",
                    "retrying",
                    "succeeded",
                    "finished",
                    "dead",
                    "cancelled",
                    "aborted",
                    "awaiting-callback",
                    "snoozed"
                  ]
                }
              }
            }
          }
        }
      },
      "Reschedule": {
        "type": "object",
        "properties": {
          "delayMs": {
            "type": "integer",
            "minimum": 0
          },
          "at": {
            "type": [
              "integer",
              "string"
            ]
          }
        }
      },
      "Reason": {
        "type": "object",
        "properties": {
          "reason": {
            "type": "string"
          }
        }
      },
      "AbortOutcome": {
        "type": "object",
        "required": [
          "id",
          "outcome"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "outcome": {
            "type": "string",
            "enum": [
              "cancelled",
              "signalled",
              "finished"
            ]
          }
        }
      },
      "CallbackPayload": {
        "type": "object",
        "properties": {
          "payload": {
            "type": "string"
          },
          "payloadBase64": {
            "type": "string"
          }
        }
      },
      "GroupSummary": {
        "type": "object",
        "required": [
          "name",
          "generation",
          "members",
          "lag",
          "inFlight",
          "retriesPending",
          "deadLettered"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "generation": {
            "type": "integer"
          },
          "members": {
            "type": "integer"
          },
          "lag": {
            "type": "integer"
          },
          "inFlight": {
            "type": "integer"
          },
          "retriesPending": {
            "type": "integer"
          },
          "deadLettered": {
            "type": "integer"
          }
        }
      },
      "GroupPage": {
        "type": "object",
        "required": [
          "groups",
          "next"
        ],
        "properties": {
          "groups": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/GroupSummary"
            }
          },
          "next": {
            "type": "string"
          }
        }
      },
      "Group": {
        "type": "object",
        "required": [
          "name",
          "generation",
          "deadLetterTopic",
          "lag",
          "inFlight",
          "retriesPending",
          "deadLettered",
          "members",
          "partitions"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "generation": {
            "type": "integer"
          },
          "deadLetterTopic": {
            "type": "string"
          },
          "lag": {
            "type": "integer"
          },
          "inFlight": {
            "type": "integer"
          },
          "retriesPending": {
            "type": "integer"
          },
          "deadLettered": {
            "type": "integer"
          },
          "members": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "name",
                "topics",
                "lastSeenAt",
                "assignment"
              ],
              "properties": {
                "id": {
                  "type": "string"
                },
                "name": {
                  "type": "string"
                },
                "topics": {
                  "type": "array",
                  "items": {
                    "type": "string"
                  }
                },
                "lastSeenAt": {
                  "type": "integer"
                },
                "lastSeenAtISO": {
                  "type": [
                    "string",
                    "null"
                  ],
                  "description": "The same time as ISO-8601 (UTC, milliseconds)."
                },
                "assignment": {
                  "type": "array",
                  "items": {
                    "type": "object"
                  }
                }
              }
            }
          },
          "partitions": {
            "type": "array",
            "items": {
              "type": "object"
            }
          }
        }
      },
      "DeadLetter": {
        "allOf": [
          {
            "$ref": "#/components/schemas/Message"
          },
          {
            "type": "object",
            "required": [
              "originalTopic",
              "originalId",
              "attempts",
              "error"
            ],
            "properties": {
              "originalTopic": {
                "type": [
                  "string",
                  "null"
                ]
              },
              "originalId": {
                "type": [
                  "string",
                  "null"
                ]
              },
              "attempts": {
                "type": [
                  "integer",
                  "null"
                ]
              },
              "error": {
                "type": [
                  "string",
                  "null"
                ]
              }
            }
          }
        ]
      },
      "DeadLetterPage": {
        "type": "object",
        "required": [
          "deadLetters",
          "next"
        ],
        "properties": {
          "deadLetters": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/DeadLetter"
            }
          },
          "next": {
            "type": [
              "string",
              "null"
            ]
          }
        }
      },
      "Redrive": {
        "type": "object",
        "description": "All (nothing given), the first max, or the dead letters named by ids (their ids in the listing).",
        "properties": {
          "max": {
            "type": "integer",
            "minimum": 1
          },
          "ids": {
            "type": "array",
            "maxItems": 1000,
            "items": {
              "type": "string"
            }
          }
        }
      },
      "Redriven": {
        "type": "object",
        "required": [
          "redriven"
        ],
        "properties": {
          "redriven": {
            "type": "integer"
          }
        }
      },
      "Schedule": {
        "type": "object",
        "required": [
          "name",
          "topic",
          "partition",
          "revision",
          "misfire",
          "paused",
          "nextOccurrence"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "topic": {
            "type": "string"
          },
          "partition": {
            "type": "integer"
          },
          "revision": {
            "type": "integer"
          },
          "misfire": {
            "type": "string"
          },
          "paused": {
            "type": "boolean"
          },
          "nextOccurrence": {
            "type": [
              "integer",
              "null"
            ]
          },
          "nextOccurrenceISO": {
            "type": [
              "string",
              "null"
            ],
            "description": "The same time as ISO-8601 (UTC, milliseconds)."
          },
          "lastOccurrence": {
            "type": [
              "integer",
              "null"
            ]
          },
          "idle": {
            "type": [
              "string",
              "null"
            ]
          },
          "upcoming": {
            "type": "array",
            "items": {
              "type": [
                "string",
                "null"
              ]
            }
          }
        }
      },
      "ScheduleList": {
        "type": "object",
        "required": [
          "schedules"
        ],
        "properties": {
          "schedules": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Schedule"
            }
          }
        }
      },
      "Lock": {
        "type": "object",
        "required": [
          "name",
          "holder",
          "token",
          "expiresAt",
          "waiters"
        ],
        "properties": {
          "name": {
            "type": "string"
          },
          "holder": {
            "type": [
              "string",
              "null"
            ]
          },
          "token": {
            "type": [
              "integer",
              "null"
            ]
          },
          "expiresAt": {
            "type": [
              "integer",
              "null"
            ]
          },
          "expiresAtISO": {
            "type": [
              "string",
              "null"
            ],
            "description": "The same time as ISO-8601 (UTC, milliseconds)."
          },
          "waiters": {
            "type": "integer"
          }
        }
      },
      "LockList": {
        "type": "object",
        "required": [
          "locks"
        ],
        "properties": {
          "locks": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/Lock"
            }
          }
        }
      },
      "Flow": {
        "type": "object",
        "required": [
          "id",
          "children",
          "succeeded",
          "failed",
          "pending",
          "policy",
          "state",
          "continuation"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "children": {
            "type": "integer"
          },
          "succeeded": {
            "type": "integer"
          },
          "failed": {
            "type": "integer"
          },
          "pending": {
            "type": "integer"
          },
          "policy": {
            "type": "string"
          },
          "state": {
            "type": "string",
            "enum": [
              "running",
              "finished",
              "aborted"
            ]
          },
          "continuation": {
            "type": [
              "string",
              "null"
            ]
          }
        }
      },
      "FlowAborted": {
        "type": "object",
        "required": [
          "id",
          "abortedChildren"
        ],
        "properties": {
          "id": {
            "type": "string"
          },
          "abortedChildren": {
            "type": "integer"
          }
        }
      },
      "Upcoming": {
        "type": "object",
        "required": [
          "dueWithinMinute",
          "dueWithinHour",
          "dueWithinDay",
          "countsAreLowerBounds",
          "earliest"
        ],
        "properties": {
          "dueWithinMinute": {
            "type": "integer"
          },
          "dueWithinHour": {
            "type": "integer"
          },
          "dueWithinDay": {
            "type": "integer"
          },
          "countsAreLowerBounds": {
            "type": "boolean",
            "description": "A partition's walk of its timer lists stopped at its budget (50,000 entries): the counts are at least these."
          },
          "earliest": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "dueAt",
                "dueAtISO"
              ],
              "properties": {
                "id": {
                  "type": "string"
                },
                "dueAt": {
                  "type": "integer"
                },
                "dueAtISO": {
                  "type": [
                    "string",
                    "null"
                  ]
                }
              }
            }
          }
        }
      },
      "GroupJobs": {
        "type": "object",
        "required": [
          "running",
          "retrying",
          "waiting"
        ],
        "properties": {
          "running": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "group",
                "state"
              ],
              "properties": {
                "id": {
                  "type": "string"
                },
                "group": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "state": {
                  "type": "string"
                }
              }
            },
            "description": "Leased to a member: member, attempt, leaseDeadlineAt."
          },
          "retrying": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "group",
                "state"
              ],
              "properties": {
                "id": {
                  "type": "string"
                },
                "group": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "state": {
                  "type": "string"
                }
              }
            },
            "description": "Failed, waiting in the wheel for the next attempt: nextAttemptAt, attempts, lastError."
          },
          "waiting": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "id",
                "group",
                "state"
              ],
              "properties": {
                "id": {
                  "type": "string"
                },
                "group": {
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "state": {
                  "type": "string"
                }
              }
            },
            "description": "Parked: awaiting a callback (timeoutAt) or snoozed (wakesAt)."
          }
        }
      }
    }
  },
  "paths": {
    "/v2/openapi.json": {
      "get": {
        "operationId": "openapi",
        "summary": "This document.",
        "security": [],
        "responses": {
          "200": {
            "description": "The OpenAPI document.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    },
    "/v2/topics": {
      "get": {
        "operationId": "listTopics",
        "summary": "Topics the token sees, a page at a time, with their totals.",
        "parameters": [
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "Items per page, 1 to 1,000 (100 by default).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          },
          {
            "name": "after",
            "in": "query",
            "required": false,
            "description": "The `next` cursor of the page before.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of topics.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/TopicPage"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      },
      "post": {
        "operationId": "createTopic",
        "summary": "Create a topic (admin).",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/NewTopic"
              }
            }
          }
        },
        "responses": {
          "201": {
            "description": "The topic.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Topic"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "429": {
            "description": "A broker limit (topics, partitions, groups) would be passed.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/topics/{topic}": {
      "parameters": [
        {
          "name": "topic",
          "in": "path",
          "required": true,
          "description": "Topic name (1-200 of A-Z a-z 0-9 . _ -).",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "orders"
        }
      ],
      "get": {
        "operationId": "getTopic",
        "summary": "A topic, its settings and partitions.",
        "responses": {
          "200": {
            "description": "The topic.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Topic"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "deleteTopic",
        "summary": "Delete a topic with all its messages (admin).",
        "responses": {
          "204": {
            "description": "Deleted."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/topics/{topic}/scheduled": {
      "parameters": [
        {
          "name": "topic",
          "in": "path",
          "required": true,
          "description": "Topic name (1-200 of A-Z a-z 0-9 . _ -).",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "orders"
        }
      ],
      "get": {
        "operationId": "upcomingScheduled",
        "summary": "A topic's scheduled messages (and retries waiting in its wheels) due within a minute, an hour, a day, and the earliest of them (up to limit).",
        "parameters": [
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "How many of the earliest, 1 to 1,000 (100 by default).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Counts and the earliest.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Upcoming"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/topics/{topic}/partitions/{partition}/messages": {
      "parameters": [
        {
          "name": "topic",
          "in": "path",
          "required": true,
          "description": "Topic name (1-200 of A-Z a-z 0-9 . _ -).",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "orders"
        },
        {
          "name": "partition",
          "in": "path",
          "required": true,
          "description": "Partition number.",
          "schema": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2147483647
          },
          "example": 0
        }
      ],
      "get": {
        "operationId": "peekMessages",
        "summary": "Messages of a partition's ready log, read without leasing them.",
        "parameters": [
          {
            "name": "from",
            "in": "query",
            "required": false,
            "description": "First offset (the log's start without it).",
            "schema": {
              "type": "integer",
              "minimum": 0
            }
          },
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "Items per page, 1 to 1,000 (100 by default).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          },
          {
            "name": "group",
            "in": "query",
            "required": false,
            "description": "Skip what this group has acked.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of messages; nextFrom is the offset of the next page.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/MessagePage"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/topics/{topic}/messages": {
      "parameters": [
        {
          "name": "topic",
          "in": "path",
          "required": true,
          "description": "Topic name (1-200 of A-Z a-z 0-9 . _ -).",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "orders"
        }
      ],
      "post": {
        "operationId": "publish",
        "summary": "Publish a message, now, after a delay, or at a time (publish).",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/NewMessage"
              }
            }
          }
        },
        "responses": {
          "201": {
            "description": "Stored.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Published"
                }
              }
            }
          },
          "200": {
            "description": "A duplicate of one stored before (its dedup key).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Published"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "The message is larger than the topic allows.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/messages/{id}": {
      "parameters": [
        {
          "name": "id",
          "in": "path",
          "required": true,
          "description": "Message id: topic id, partition, r (ready) or s (scheduled) and its offset (`3-1-s4096`).",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-[rs][0-9]+$"
          },
          "example": "1-0-r0"
        }
      ],
      "get": {
        "operationId": "getMessage",
        "summary": "Where a message (a job) stands, per group.",
        "parameters": [
          {
            "name": "group",
            "in": "query",
            "required": false,
            "description": "Only this group.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Its states.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobStatuses"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "cancelMessage",
        "summary": "Cancel a scheduled message (publish).",
        "responses": {
          "204": {
            "description": "Cancelled."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/messages/{id}/reschedule": {
      "parameters": [
        {
          "name": "id",
          "in": "path",
          "required": true,
          "description": "Message id: topic id, partition, r (ready) or s (scheduled) and its offset (`3-1-s4096`).",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-[rs][0-9]+$"
          },
          "example": "1-0-r0"
        }
      ],
      "post": {
        "operationId": "rescheduleMessage",
        "summary": "Move a scheduled message to another time (publish); now without delayMs or at.",
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/Reschedule"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "Its new id.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "required": [
                    "id"
                  ],
                  "properties": {
                    "id": {
                      "type": "string"
                    }
                  }
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/messages/{id}/abort": {
      "parameters": [
        {
          "name": "id",
          "in": "path",
          "required": true,
          "description": "Message id: topic id, partition, r (ready) or s (scheduled) and its offset (`3-1-s4096`).",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-[rs][0-9]+$"
          },
          "example": "1-0-r0"
        }
      ],
      "post": {
        "operationId": "abortJob",
        "summary": "Abort a job: cancel it if it has not run, stop it if it runs (admin).",
        "requestBody": {
          "required": false,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/Reason"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "What the abort did.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/AbortOutcome"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/callbacks/{token}/complete": {
      "parameters": [
        {
          "name": "token",
          "in": "path",
          "required": true,
          "description": "The callback token (`<id>.<due ms>.<16 hex digits>`).",
          "schema": {
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "completeCallback",
        "summary": "Complete a parked job's callback, once (publish).",
        "requestBody": {
          "required": false,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/CallbackPayload"
              }
            }
          }
        },
        "responses": {
          "204": {
            "description": "Completed: the job resumes with the payload."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups": {
      "get": {
        "operationId": "listGroups",
        "summary": "Consumer groups, a page at a time.",
        "parameters": [
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "Items per page, 1 to 1,000 (100 by default).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          },
          {
            "name": "after",
            "in": "query",
            "required": false,
            "description": "The `next` cursor of the page before.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of groups.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/GroupPage"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups/{group}": {
      "parameters": [
        {
          "name": "group",
          "in": "path",
          "required": true,
          "description": "Group name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "billing"
        }
      ],
      "get": {
        "operationId": "getGroup",
        "summary": "A group: members, assignment, lag, in flight, retries, dead letters per partition.",
        "responses": {
          "200": {
            "description": "The group.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Group"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups/{group}/jobs": {
      "parameters": [
        {
          "name": "group",
          "in": "path",
          "required": true,
          "description": "Group name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "billing"
        }
      ],
      "get": {
        "operationId": "groupJobs",
        "summary": "A group's jobs in flight: running, retrying, waiting for a callback or snoozed (at most limit of each).",
        "parameters": [
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "At most this many of each state, 1 to 1,000 (100).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The jobs.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/GroupJobs"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups/{group}/dead-letters": {
      "parameters": [
        {
          "name": "group",
          "in": "path",
          "required": true,
          "description": "Group name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "billing"
        }
      ],
      "get": {
        "operationId": "listDeadLetters",
        "summary": "A group's dead letters, with their error and attempts, a page at a time.",
        "parameters": [
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "Items per page, 1 to 1,000 (100 by default).",
            "schema": {
              "type": "integer",
              "minimum": 1,
              "maximum": 1000
            }
          },
          {
            "name": "after",
            "in": "query",
            "required": false,
            "description": "The `next` cursor of the page before.",
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of dead letters.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/DeadLetterPage"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups/{group}/dead-letters/redrive": {
      "parameters": [
        {
          "name": "group",
          "in": "path",
          "required": true,
          "description": "Group name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "billing"
        }
      ],
      "post": {
        "operationId": "redriveDeadLetters",
        "summary": "Send a group's dead letters (all, or the first max) back to it (admin).",
        "requestBody": {
          "required": false,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/Redrive"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "How many went back.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Redriven"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/groups/{group}/dead-letters/{id}": {
      "parameters": [
        {
          "name": "group",
          "in": "path",
          "required": true,
          "description": "Group name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "billing"
        },
        {
          "name": "id",
          "in": "path",
          "required": true,
          "description": "The dead letter's id in the listing.",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-[rs][0-9]+$"
          },
          "example": "2-0-r0"
        }
      ],
      "delete": {
        "operationId": "deleteDeadLetter",
        "summary": "Delete one dead letter: never listed or delivered again (admin).",
        "responses": {
          "204": {
            "description": "Deleted."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/schedules": {
      "get": {
        "operationId": "listSchedules",
        "summary": "Schedules with their next occurrence.",
        "responses": {
          "200": {
            "description": "The schedules.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ScheduleList"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/schedules/{name}": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "description": "Schedule name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "nightly"
        }
      ],
      "get": {
        "operationId": "getSchedule",
        "summary": "A schedule and its next occurrences.",
        "parameters": [
          {
            "name": "upcoming",
            "in": "query",
            "required": false,
            "description": "How many next occurrences, 0 to 1,000 (5).",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 1000
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The schedule.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Schedule"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "deleteSchedule",
        "summary": "Delete a schedule (admin).",
        "responses": {
          "204": {
            "description": "Deleted."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/schedules/{name}/pause": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "description": "Schedule name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "nightly"
        }
      ],
      "post": {
        "operationId": "pauseSchedule",
        "summary": "Pause a schedule (admin).",
        "responses": {
          "200": {
            "description": "The schedule.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Schedule"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/schedules/{name}/resume": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "description": "Schedule name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "nightly"
        }
      ],
      "post": {
        "operationId": "resumeSchedule",
        "summary": "Resume a schedule (admin).",
        "responses": {
          "200": {
            "description": "The schedule.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Schedule"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/schedules/{name}/trigger": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "description": "Schedule name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "nightly"
        }
      ],
      "post": {
        "operationId": "triggerSchedule",
        "summary": "Publish an occurrence now (admin).",
        "responses": {
          "201": {
            "description": "The occurrence.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Published"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/locks": {
      "get": {
        "operationId": "listLocks",
        "summary": "Every lock held or waited for (a token without topic patterns).",
        "responses": {
          "200": {
            "description": "The locks.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/LockList"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/locks/{name}": {
      "parameters": [
        {
          "name": "name",
          "in": "path",
          "required": true,
          "description": "Lock name.",
          "schema": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._-]{1,200}$"
          },
          "example": "report"
        }
      ],
      "get": {
        "operationId": "getLock",
        "summary": "One lock.",
        "responses": {
          "200": {
            "description": "The lock.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Lock"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      },
      "delete": {
        "operationId": "releaseLock",
        "summary": "Release a lock by force: its holder's fenced writes are refused from now on (admin).",
        "responses": {
          "204": {
            "description": "Released."
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/flows/{flow}": {
      "parameters": [
        {
          "name": "flow",
          "in": "path",
          "required": true,
          "description": "Flow id (`3-0-f17`).",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-f[0-9]+$"
          },
          "example": "1-0-f0"
        }
      ],
      "get": {
        "operationId": "getFlow",
        "summary": "A flow's children and outcome.",
        "responses": {
          "200": {
            "description": "The flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Flow"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/v2/flows/{flow}/abort": {
      "parameters": [
        {
          "name": "flow",
          "in": "path",
          "required": true,
          "description": "Flow id (`3-0-f17`).",
          "schema": {
            "type": "string",
            "pattern": "^[0-9]+-[0-9]+-f[0-9]+$"
          },
          "example": "1-0-f0"
        }
      ],
      "post": {
        "operationId": "abortFlow",
        "summary": "Abort a flow and its pending children (admin).",
        "requestBody": {
          "required": false,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/Reason"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "How many children were aborted.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/FlowAborted"
                }
              }
            }
          },
          "400": {
            "description": "Bad input: a typed error (`invalidArgument`, `badJSON`, `invalidName`, ...).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "No bearer token, or not one of this server's (every write needs one).",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "403": {
            "description": "The token's scope or topic patterns do not reach this.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such topic, group, message, schedule, lock or flow.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "A conflict: the name is taken, the callback is closed, the lock is held.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The broker is closing.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    }
  }
}
"""#
}
